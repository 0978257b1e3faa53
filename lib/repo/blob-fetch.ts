/**
 * Reading chunks back, verified, with as few requests as possible.
 *
 * Requests for chunks lying back to back in the same pack are merged into one read
 * (up to 4 MiB), a few reads are in flight at once, and every chunk is decompressed
 * (bounded by its declared length) and checked against its hash before it is handed
 * out. Results come back in request order.
 *
 * With `transient`, a caller that is done with each chunk before it asks for the
 * next (a restore copies it into its own buffers) lets the reads go past the page
 * cache into pooled buffers (`readRangeDirect`): a restore reads each pack once, and
 * through the page cache those reads cost the allocation of a page each.
 */
import { DeltaDiskError } from '../errors.js';
import { DIRECT_ALIGN } from '../io/aligned-buffer.js';
import type { Content } from '../format/manifest.js';
import { BlobKind } from '../format/pack-header.js';
import { HASH_SIZE, ZERO_HASH } from '../format/repo-limits.js';
import { readLeased, type LeasedBytes } from './backend.js';
import type { ChunkIndex } from './chunk-index.js';
import { contentPages } from './content-list.js';
import type { Repository } from './repository.js';

/** So that the page-aligned range around a group fits a 4 MiB pooled buffer (readRangeDirect). */
const MAX_GROUP = 4 * 1024 * 1024 - 2 * DIRECT_ALIGN;
const GROUPS_IN_FLIGHT = 4;

export interface ChunkRequest {
  /** The caller's key (a chunk number). */
  readonly key: number;
  readonly hash: Buffer;
}

export interface FetchedChunk {
  readonly key: number;
  readonly data: Buffer;
}

interface Group {
  readonly pack: number;
  readonly offset: number;
  length: number;
  readonly members: { key: number; id: number }[];
}

function missing(hash: Buffer, what: string): never {
  throw new DeltaDiskError('REPO_CORRUPT', `${what}: chunk ${hash.toString('hex').slice(0, 16)}… is missing from the repository (run \`deltadisk check\`)`);
}

export interface FetchOptions {
  /** A chunk's data is valid only until the next one is asked for. */
  readonly transient?: boolean;
}

export async function* fetchChunks(
  repo: Repository,
  index: ChunkIndex,
  requests: readonly ChunkRequest[],
  what: string,
  options: FetchOptions = {},
): AsyncGenerator<FetchedChunk> {
  const groups: Group[] = [];
  for (const r of requests) {
    const id = index.find(r.hash);
    if (id < 0) missing(r.hash, what);
    if (index.kindOf(id) !== BlobKind.DATA) throw new DeltaDiskError('REPO_CORRUPT', `${what}: blob ${r.hash.toString('hex').slice(0, 16)}… is not a data chunk`);
    const pack = index.packOf(id);
    const off = index.offsetOf(id);
    const len = index.storedLengthOf(id);
    const g = groups[groups.length - 1];
    if (g !== undefined && g.pack === pack && g.offset + g.length === off && g.length + len <= MAX_GROUP) {
      g.length += len;
      g.members.push({ key: r.key, id });
    } else {
      groups.push({ pack, offset: off, length: len, members: [{ key: r.key, id }] });
    }
  }
  const backend = repo.backend;
  const read = async (g: Group): Promise<LeasedBytes> => {
    const name = index.packName(g.pack);
    return options.transient === true ? readLeased(backend, 'pack', name, g.offset, g.length) : { bytes: await backend.readRange('pack', name, g.offset, g.length), release: () => undefined };
  };
  const pending: Promise<LeasedBytes>[] = [];
  const start = (g: Group): void => {
    const p = read(g);
    p.catch(() => undefined);
    pending.push(p);
  };
  try {
    for (let i = 0; i < Math.min(GROUPS_IN_FLIGHT, groups.length); i++) start(groups[i]!);
    for (let i = 0; i < groups.length; i++) {
      const { bytes, release } = await pending.shift()!;
      try {
        if (i + GROUPS_IN_FLIGHT < groups.length) start(groups[i + GROUPS_IN_FLIGHT]!);
        const g = groups[i]!;
        for (const m of g.members) {
          const at = index.offsetOf(m.id) - g.offset;
          yield { key: m.key, data: await repo.decodeBlob(index, m.id, bytes.subarray(at, at + index.storedLengthOf(m.id))) };
        }
      } finally {
        release();
      }
    }
  } finally {
    for (const r of await Promise.allSettled(pending)) if (r.status === 'fulfilled') r.value.release();
  }
}

export interface ContentPiece {
  readonly offset: number;
  readonly length: number;
  /** The bytes, or null for a chunk of zeros (never stored). */
  readonly data: Buffer | null;
}

/**
 * The bytes of a content, in order, verified. Checks that the chunk lengths add up
 * to the declared size (fixed chunks: each exactly its slot) before handing out any
 * byte beyond it.
 * @throws REPO_CORRUPT
 */
export async function* readContent(repo: Repository, index: ChunkIndex, c: Content, what: string, options: FetchOptions = {}): AsyncGenerator<ContentPiece> {
  const bad = (m: string): never => {
    throw new DeltaDiskError('REPO_CORRUPT', `${what}: ${m}`);
  };
  let offset = 0;
  let i = 0;
  for await (const page of contentPages(repo, index, c)) {
    const n = page.length / HASH_SIZE;
    const lengths = new Array<number>(n);
    const requests: ChunkRequest[] = [];
    for (let k = 0; k < n; k++) {
      const h = page.subarray(k * HASH_SIZE, (k + 1) * HASH_SIZE);
      const slot = c.chunkSize > 0 ? Math.min(c.chunkSize, c.size - (i + k) * c.chunkSize) : -1;
      if (h.equals(ZERO_HASH)) {
        if (c.chunkSize === 0) bad('a content-defined chunk list names the zero chunk');
        lengths[k] = slot;
        continue;
      }
      const id = index.find(h);
      if (id < 0) missing(h, what);
      const raw = index.rawLengthOf(id);
      if (slot >= 0 && raw !== slot) bad(`chunk ${i + k} is ${raw} bytes, its slot ${slot}`);
      lengths[k] = raw;
      requests.push({ key: k, hash: Buffer.from(h) });
    }
    let next = 0;
    const emitZerosUpTo = function* (limit: number): Generator<ContentPiece> {
      for (; next < limit; next++) {
        const len = lengths[next]!;
        if (offset + len > c.size) bad('chunks exceed the declared size');
        yield { offset, length: len, data: null };
        offset += len;
      }
    };
    for await (const f of fetchChunks(repo, index, requests, what, options)) {
      yield* emitZerosUpTo(f.key);
      if (offset + f.data.length > c.size) bad('chunks exceed the declared size');
      yield { offset, length: f.data.length, data: f.data };
      offset += f.data.length;
      next = f.key + 1;
    }
    yield* emitZerosUpTo(n);
    i += n;
  }
  if (offset !== c.size) bad(`chunks hold ${offset} bytes, the backup says ${c.size}`);
}
