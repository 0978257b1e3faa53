/**
 * Chunk lists: the sequence of chunk hashes that makes up a file or a point in time
 * of a disk, built while chunking and read back when restoring.
 *
 * Short lists (≤ 64 chunks) live inline in the manifest; longer ones are cut into
 * list blobs of 16384 hashes stored in packs like data, so a manifest stays small
 * however large the disk, memory stays bounded while backing up, and the lists of an
 * unchanged region deduplicate from one backup to the next.
 */
import { DeltaDiskError } from '../errors.js';
import type { Content, Manifest } from '../format/manifest.js';
import { BlobKind } from '../format/pack-header.js';
import { HASH_SIZE, INLINE_HASHES, LIST_BLOB_HASHES, ZERO_HASH } from '../format/repo-limits.js';
import type { ChunkIndex } from './chunk-index.js';
import { sha256, type PackWriter } from './pack-writer.js';
import type { Repository } from './repository.js';

export class ContentBuilder {
  readonly #writer: PackWriter;
  readonly #chunkSize: number;
  readonly #lists: Buffer[] = [];
  readonly #page = Buffer.allocUnsafe(LIST_BLOB_HASHES * HASH_SIZE);
  #inPage = 0;
  /** A short stored page was pushed: it must stay the last. */
  #partial = false;
  #count = 0;
  #size = 0;

  /** @param chunkSize fixed chunk size, or 0 for content-defined chunks */
  constructor(writer: PackWriter, chunkSize: number) {
    this.#writer = writer;
    this.#chunkSize = chunkSize;
  }

  get count(): number {
    return this.#count;
  }

  async push(hash: Uint8Array, length: number): Promise<void> {
    this.#assertOpenPage();
    this.#page.set(hash, this.#inPage * HASH_SIZE);
    this.#inPage++;
    this.#count++;
    this.#size += length;
    if (this.#inPage === LIST_BLOB_HASHES) await this.#storePage();
  }

  /** Appends a page of hashes (n × 32 bytes) whose chunks total `length` bytes. */
  async pushMany(hashes: Uint8Array, length: number): Promise<void> {
    this.#assertOpenPage();
    const n = hashes.length / HASH_SIZE;
    let i = 0;
    while (i < n) {
      const take = Math.min(n - i, LIST_BLOB_HASHES - this.#inPage);
      this.#page.set(hashes.subarray(i * HASH_SIZE, (i + take) * HASH_SIZE), this.#inPage * HASH_SIZE);
      this.#inPage += take;
      this.#count += take;
      i += take;
      if (this.#inPage === LIST_BLOB_HASHES) await this.#storePage();
    }
    this.#size += length;
  }

  /**
   * Appends a whole page stored already (list blob `hash`, holding `count` hashes
   * whose chunks total `length` bytes): the list names the blob again. Only where a
   * page starts, and a page of fewer than LIST_BLOB_HASHES hashes only last.
   */
  pushPage(hash: Buffer, count: number, length: number): void {
    if (this.#inPage !== 0 || this.#partial || count <= 0 || count > LIST_BLOB_HASHES) {
      throw new DeltaDiskError('INVALID_ARGUMENT', 'a stored list page goes where a page starts, and a short one only last');
    }
    this.#lists.push(hash);
    this.#count += count;
    this.#size += length;
    this.#partial = count < LIST_BLOB_HASHES;
  }

  async finish(): Promise<Content> {
    if (this.#lists.length === 0 && this.#count <= INLINE_HASHES) {
      return { count: this.#count, size: this.#size, chunkSize: this.#chunkSize, hashes: Buffer.from(this.#page.subarray(0, this.#inPage * HASH_SIZE)) };
    }
    if (this.#inPage > 0) await this.#storePage();
    return { count: this.#count, size: this.#size, chunkSize: this.#chunkSize, lists: this.#lists };
  }

  #assertOpenPage(): void {
    if (this.#partial) throw new DeltaDiskError('INVALID_ARGUMENT', 'nothing follows a short stored list page');
  }

  async #storePage(): Promise<void> {
    const bytes = this.#page.subarray(0, this.#inPage * HASH_SIZE);
    const hash = sha256(bytes);
    await this.#writer.add(hash, bytes, BlobKind.LIST); // copied: the page is reused
    this.#lists.push(hash);
    this.#inPage = 0;
  }
}

/** The hashes of the list blobs a content names (for accounting: they are blobs too). */
export function listBlobsOf(c: Content): readonly Buffer[] {
  return c.lists ?? [];
}

/**
 * The chunk hashes of `content`, a page (n × 32 bytes) at a time, in order. List
 * blobs are read from the repository and checked: kind, hash and length.
 * @throws REPO_CORRUPT when a list blob is missing or does not fit the content.
 */
export async function* contentPages(repo: Repository, index: ChunkIndex, c: Content): AsyncGenerator<Buffer> {
  if (c.hashes !== undefined) {
    if (c.hashes.length > 0) yield c.hashes;
    return;
  }
  const lists = c.lists ?? [];
  for (let i = 0; i < lists.length; i++) yield await listPage(repo, index, c, i);
}

/**
 * The key under which list blob `i` of `c` is the same page wherever it is named:
 * its hash and the number of hashes it must hold there.
 */
export function listPageKey(c: Content, i: number): string {
  return `${c.lists![i]!.toString('hex')}:${listPageHashes(c, i)}`;
}

/** The hashes list blob `i` of `c` holds: a full page, or the rest of the count on the last. */
export function listPageHashes(c: Content, i: number): number {
  const lists = c.lists ?? [];
  return i < lists.length - 1 ? LIST_BLOB_HASHES : c.count - (lists.length - 1) * LIST_BLOB_HASHES;
}

/**
 * List blob `i` of `c`, read and checked (kind, hash, length).
 * @throws REPO_CORRUPT when it is missing or does not fit the content.
 */
export async function listPage(repo: Repository, index: ChunkIndex, c: Content, i: number): Promise<Buffer> {
  const hash = c.lists![i]!;
  const id = index.find(hash);
  if (id < 0) throw new DeltaDiskError('REPO_CORRUPT', `chunk list ${hash.toString('hex').slice(0, 16)}… is missing from the repository`);
  if (index.kindOf(id) !== BlobKind.LIST) throw new DeltaDiskError('REPO_CORRUPT', `blob ${hash.toString('hex').slice(0, 16)}… is not a chunk list`);
  const page = await repo.readBlob(index, id);
  const expected = listPageHashes(c, i);
  if (page.length !== expected * HASH_SIZE) {
    throw new DeltaDiskError('REPO_CORRUPT', `chunk list ${i} holds ${page.length / HASH_SIZE} hashes, expected ${expected}`);
  }
  return page;
}

/**
 * The pages of `content` not in `seen` (which then holds them): for readers that
 * only collect hashes, so that a list blob named many times, by one content or by
 * many, is read once. (A manifest of a few megabytes may name one list blob 2^18
 * times: read each time, that is 128 GiB.)
 */
export async function* unseenPages(repo: Repository, index: ChunkIndex, c: Content, seen: Set<string>): AsyncGenerator<Buffer> {
  if (c.hashes !== undefined) {
    if (c.hashes.length > 0) yield c.hashes;
    return;
  }
  for (let i = 0; i < (c.lists ?? []).length; i++) {
    const key = listPageKey(c, i);
    if (seen.has(key)) continue;
    const page = await listPage(repo, index, c, i);
    seen.add(key);
    yield page;
  }
}

/** The chunk hashes of `content`, one at a time (views valid until the next page). */
export async function* contentHashes(repo: Repository, index: ChunkIndex, c: Content): AsyncGenerator<Buffer> {
  for await (const page of contentPages(repo, index, c)) {
    for (let at = 0; at < page.length; at += HASH_SIZE) yield page.subarray(at, at + HASH_SIZE);
  }
}

/** Every content a manifest names (files, and each point in time of each disk), with a label. */
export function* manifestContents(m: Manifest): Generator<{ readonly content: Content; readonly what: string }> {
  for (const e of m.entries) {
    if (e.type === 'file') yield { content: e.content, what: e.path };
    if (e.type === 'chain') {
      yield { content: e.chain.capture.content, what: `${e.path} (state at capture)` };
      for (const p of e.chain.points) yield { content: p.content, what: `${e.path} (snapshot ${p.name})` };
    }
  }
}

/**
 * Calls `fn` with every blob hash (chunk lists and non-zero chunks) the manifests
 * reference, each distinct chunk list read once.
 */
export async function forEachReferencedBlob(repo: Repository, index: ChunkIndex, manifests: readonly Manifest[], fn: (hash: Buffer, what: string) => void): Promise<void> {
  const seen = new Set<string>();
  for (const m of manifests) {
    for (const { content, what } of manifestContents(m)) {
      for (const l of content.lists ?? []) fn(l, what);
      for await (const page of unseenPages(repo, index, content, seen)) {
        for (let at = 0; at < page.length; at += HASH_SIZE) {
          const h = page.subarray(at, at + HASH_SIZE);
          if (!h.equals(ZERO_HASH)) fn(h, what);
        }
      }
    }
  }
}
