/**
 * Reading one point in time of a disk into chunks, as little as possible.
 *
 * The disk is cut into fixed chunks aligned on its blocks. For each chunk, in order:
 *  - unchanged since a base (a previous backup of the same point, or another point of
 *    this backup) and its chunk still usable in the repository: reuse the base's hash
 *    without reading;
 *  - known to read as zeros from the disk's own map: the zero hash, without reading;
 *  - otherwise read it (consecutive chunks, and scattered ones up to MAX_GATHER
 *    bytes, in one request; a few requests in flight),
 *    hash it, store it if new.
 * Work proceeds a list page (16384 chunks) at a time, so memory does not grow with
 * the disk.
 */
import type { DiskReader } from '../chain/disk-reader.js';
import type { Content } from '../format/manifest.js';
import { HASH_SIZE, LIST_BLOB_HASHES } from '../format/repo-limits.js';
import { BufferPool } from '../io/buffer-pool.js';
import type { BackupSession } from './backup-session.js';
import { ContentBuilder, listPage, listPageHashes } from './content-list.js';
import { runsOf } from './read-ahead.js';

const MAX_READ = 8 * 1024 * 1024;
/** Bytes of read buffers held at once, at most (plus one run being hashed). */
const READ_AHEAD_BYTES = 3 * MAX_READ;
const READS_IN_FLIGHT = 16;
/**
 * Bytes of buffers held at once by groups of scattered chunks: four 1 MiB groups in
 * flight keep hashing fed from the page cache, and an incremental backup allocates
 * 4 MiB of read buffers, not 16 (fresh ArrayBuffers cost it a full collection).
 */
const SHORT_AHEAD = 4 * 1024 * 1024;
/**
 * Scattered chunks are read together up to this many bytes a request: larger groups
 * make hashing wait for more to arrive, smaller ones cost more requests. (Reading an
 * incremental backup's 10 MiB of a 1 GiB chain, in disk order, not yet storage
 * order: 46 ms one chunk a request, 34 ms with 1 MiB, 39 ms with 8 MiB, 42 ms with
 * 256 KiB; medians of 16 through the CLI.)
 */
const MAX_GATHER = 1024 * 1024;

export interface ChainReadPlan {
  readonly chunkSize: number;
  /**
   * Chunks that may differ from `base` (1 = changed), when there is a base; `usable`
   * when every chunk of the base is known to be in the index, usable (the index
   * cache vouches for the backup it comes from), so none is looked up.
   */
  readonly base?: { readonly content: Content; readonly changed: Uint8Array; readonly usable?: boolean };
}

/** Marks the chunks holding any of `blocks`. */
export function changedChunks(blocks: readonly number[], blockSize: number, chunkSize: number, n: number): Uint8Array {
  const out = new Uint8Array(n);
  for (const b of blocks) {
    const c = Math.floor((b * blockSize) / chunkSize);
    if (c < n) out[c] = 1;
  }
  return out;
}

/**
 * `runs` with those shorter than `short` bytes after the others, cut into single
 * chunks ordered by where each is stored: layer, then position in it (base blocks
 * by theirs). Two neighbours on the disk may have been written far apart.
 */
function storageOrder(runs: [number, number][], reader: DiskReader, cs: number, short: number): [number, number][] {
  const out: [number, number][] = [];
  const keyed: { chunk: number; depth: number; at: number }[] = [];
  for (const run of runs) {
    if (run[1] * cs >= short) {
      out.push(run);
      continue;
    }
    for (let i = run[0]; i < run[0] + run[1]; i++) {
      const block = Math.floor((i * cs) / reader.blockSize);
      const src = reader.source(block);
      if (src.kind === 'data') keyed.push({ chunk: i, depth: src.depth, at: src.offset });
      else keyed.push({ chunk: i, depth: -1, at: block });
    }
  }
  keyed.sort((a, b) => a.depth - b.depth || a.at - b.at);
  for (const k of keyed) out.push([k.chunk, 1]);
  return out;
}

/** Whether hash `k` of a page (as 32-bit words, 8 a hash) is the zero hash. */
function isZeroHashIn(words: Int32Array, k: number): boolean {
  const w = k * 8;
  return (words[w]! | words[w + 1]! | words[w + 2]! | words[w + 3]! | words[w + 4]! | words[w + 5]! | words[w + 6]! | words[w + 7]!) === 0;
}

export async function readChainPoint(s: BackupSession, reader: DiskReader, plan: ChainReadPlan, label: string): Promise<Content> {
  const cs = plan.chunkSize;
  const size = reader.virtualSize;
  const n = Math.ceil(size / cs);
  const builder = new ContentBuilder(s.writer, cs);
  const base = plan.base;
  const lengthOf = (i: number): number => Math.min(cs, size - i * cs);
  // Read buffers, reused run after run: fresh memory for every read cost page faults
  // and garbage collections worth a tenth of a first backup's time.
  const MAX_READ_BYTES = Math.max(1, Math.floor(MAX_READ / cs)) * cs;
  const buffers: Buffer[] = [];
  // Buffers of short runs (an incremental backup reads mostly single chunks), by
  // size class, up to READ_AHEAD_BYTES of them kept.
  const shortBuffers = new BufferPool(READ_AHEAD_BYTES);
  // Whether each hash of a base page may be reused (ChunkIndex.usableInPage).
  const usable = new Uint8Array(LIST_BLOB_HASHES);
  for (let first = 0, p = 0; first < n; first += LIST_BLOB_HASHES, p++) {
    const count = Math.min(LIST_BLOB_HASHES, n - first);
    let bytes = 0;
    for (let k = 0; k < count; k++) bytes += lengthOf(first + k);
    // A page of chunks none of which changed, of a base whose chunks the index
    // vouches for, is the base's page: its list blob is named again, unread and
    // unhashed. An incremental backup then costs what changed, not the disk's size
    // (each page is 512 KiB of hashes read, checked and hashed again, per GiB).
    const reused = base?.usable === true ? samePage(s, base.content, p, first, count, base.changed) : undefined;
    if (reused !== undefined) {
      builder.pushPage(reused, count, bytes);
      s.progress(label, bytes, 0);
      continue;
    }
    // The page starts as the base's page (one copy, not one per chunk: an
    // incremental backup of a large disk is mostly this loop); every entry not
    // reused is then the zero hash, or the hash of the chunk as read.
    const page = Buffer.alloc(count * HASH_SIZE); // its own memory: aligned for the word views below
    const basePage = base === undefined ? undefined : await basePageAt(s, base.content, p);
    const changed = basePage !== undefined && basePage.length === page.length ? base!.changed : undefined;
    let words: Int32Array | undefined;
    if (changed !== undefined) {
      page.set(basePage as Buffer);
      words = new Int32Array(page.buffer, page.byteOffset, page.length >> 2);
      if (plan.base!.usable === true) usable.fill(1, 0, count);
      else s.index.usableInPage(page, count, usable);
    }
    const toRead: number[] = [];
    for (let k = 0; k < count; k++) {
      const i = first + k;
      const at = k * HASH_SIZE;
      if (changed !== undefined) {
        if (changed[i] === 0 && (usable[k] === 1 || isZeroHashIn(words!, k))) continue;
        page.fill(0, at, at + HASH_SIZE);
      }
      // Known from the map to read as zeros: the zero hash. Asked only of chunks not
      // reused, so an incremental backup looks at the changed ones alone.
      if (reader.isZeroRange(i * cs, lengthOf(i))) continue;
      toRead.push(i);
    }
    let read = 0;
    // Runs are read in groups, each group one request (DiskReader.gatherInto): a
    // long run alone (a first backup), or short ones up to MAX_GATHER bytes, taken in
    // the order their data is stored. An incremental backup's changed chunks lie
    // scattered over the disk but side by side in the layer they were written to:
    // in that order, a group is a read or two, not one a chunk.
    const runs = storageOrder(runsOf(toRead, Math.max(1, Math.floor(MAX_READ / cs))), reader, cs, MAX_GATHER);
    const groups: number[] = []; // index of each group's first run; runs.length at the end
    for (let r = 0, bytesInGroup = 0; r < runs.length; r++) {
      const len = runBytes(r);
      if (r === 0 || bytesInGroup + len > MAX_GATHER) {
        groups.push(r);
        bytesInGroup = 0;
      }
      bytesInGroup += len;
    }
    groups.push(runs.length);
    function runBytes(r: number): number {
      return Math.min(runs[r]![1] * cs, size - runs[r]![0] * cs);
    }
    // Reads ahead: up to READ_AHEAD_BYTES of buffers (three full groups; SHORT_AHEAD
    // before a short group) and READS_IN_FLIGHT requests, so the next reads are on
    // their way while this group is hashed. A group of less than half the largest
    // gets a buffer of its size class from the short-group pool, not a full one; each
    // counts against the limit for the memory it holds.
    const pending: Promise<{ buffer: Buffer | undefined; data: Buffer }>[] = [];
    let next = 0;
    let ahead = 0;
    const bytesOf = (g: number): number => {
      let n = 0;
      for (let r = groups[g]!; r < groups[g + 1]!; r++) n += runBytes(r);
      return n;
    };
    const isShort = (len: number): boolean => len * 2 < MAX_READ_BYTES;
    const holds = (len: number): number => (isShort(len) ? BufferPool.sizeFor(len) : MAX_READ_BYTES);
    const start = (g: number): Promise<{ buffer: Buffer | undefined; data: Buffer }> => {
      const len = bytesOf(g);
      const buffer = isShort(len) ? undefined : (buffers.pop() ?? Buffer.allocUnsafe(MAX_READ_BYTES));
      const data = buffer === undefined ? shortBuffers.acquire(len) : buffer.subarray(0, len);
      const starts: number[] = [];
      const lengths: number[] = [];
      for (let r = groups[g]!; r < groups[g + 1]!; r++) {
        starts.push(runs[r]![0] * cs);
        lengths.push(runBytes(r));
      }
      const p = reader.gatherInto(data, starts, lengths).then(() => ({ buffer, data }));
      p.catch(() => undefined);
      return p;
    };
    const groupCount = groups.length - 1;
    const readAhead = (): void => {
      while (next < groupCount && pending.length < READS_IN_FLIGHT && (pending.length === 0 || ahead + holds(bytesOf(next)) <= (isShort(bytesOf(next)) ? SHORT_AHEAD : READ_AHEAD_BYTES))) {
        ahead += holds(bytesOf(next));
        pending.push(start(next++));
      }
    };
    readAhead();
    try {
      for (let g = 0; g < groupCount; g++) {
        s.checkpoint();
        const { buffer, data } = await pending.shift()!;
        ahead -= holds(data.length);
        readAhead();
        read += data.length;
        // Hashed and stored a run at a time (a short group's chunks one by one): a
        // group's scattered chunks hashed together would start the hashing helper
        // thread, and an incremental backup then waited for it to boot
        // (block-checksums.ts).
        let at = 0;
        for (let r = groups[g]!; r < groups[g + 1]!; r++) {
          const [i0, len] = runs[r]!;
          const chunks: Buffer[] = [];
          for (let j = 0; j < len; j++) chunks.push(data.subarray(at + j * cs, at + j * cs + lengthOf(i0 + j)));
          at += runBytes(r);
          const hashes = await s.chunkHashes(chunks);
          for (let j = 0; j < len; j++) page.set(hashes[j]!, (i0 + j - first) * HASH_SIZE);
        }
        // What was stored has been copied into a pack: reuse the buffer.
        if (buffer !== undefined) buffers.push(buffer);
        else shortBuffers.release(data);
      }
    } finally {
      // After a failure, no read is left running into buffers nobody waits for.
      await Promise.allSettled(pending);
    }
    await builder.pushMany(page, bytes);
    s.progress(label, bytes, read);
  }
  return builder.finish();
}

/**
 * The hash of list page `p` of `content` when the page about to be built, chunks
 * [first, first + count), is certain to equal it: it is a whole list blob of the
 * same size, no chunk of it changed, and the blob is in the index, usable.
 */
function samePage(s: BackupSession, content: Content, p: number, first: number, count: number, changed: Uint8Array): Buffer | undefined {
  const lists = content.lists;
  if (lists === undefined || p >= lists.length || listPageHashes(content, p) !== count) return undefined;
  if (changed.subarray(first, first + count).includes(1)) return undefined;
  return s.index.findUsable(lists[p]!) >= 0 ? lists[p] : undefined;
}

/** Page `p` of `content` (read and checked), or undefined past its end. */
async function basePageAt(s: BackupSession, content: Content, p: number): Promise<Buffer | undefined> {
  if (content.hashes !== undefined) return p === 0 && content.hashes.length > 0 ? content.hashes : undefined;
  return p < (content.lists ?? []).length ? listPage(s.repo, s.index, content, p) : undefined;
}
