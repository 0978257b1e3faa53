/**
 * The checksums of a batch of blocks, SHA-256 on two threads: CRC-32 (the record
 * format's integrity check: every block written, every block a backup reads) and
 * SHA-256 (inline dedup, and the repository's chunk hashes), as the caller asks.
 *
 * SHA-256 runs at ~1.1-1.6 GB/s on one core here, so a batch that asks for it and
 * holds at least MIN_SPLIT_BYTES is split: one helper thread checksums the second
 * half (copied into memory shared with it, at ~6 GB/s) while this thread does the
 * first. A batch of CRC-32s alone is never split: CRC-32 runs at ~5 GB/s, as fast as
 * the copy, and 10 MiB of blocks took 3.3 ms split against 2.4 ms here. (The thread
 * pool, through webcrypto, was measured slower than hashing here: its per-call
 * copies and the contention with file I/O cost more than the second core gained.)
 *
 * The helper is one process-wide worker, started on first use and referenced only
 * while it holds a job, so it never keeps the process alive. Until it has started
 * (a worker takes ~25-30 ms to boot, longer than a batch takes here), while it is
 * busy with another batch, and once it has failed, batches are checksummed here:
 * results never wait on it and never depend on it.
 */
import { Worker } from 'node:worker_threads';
import { crc32 } from 'node:zlib';
import { MIN_BLOCK_SIZE } from '../format/limits.js';
import { sha256 } from './layer-file.js';

const HASH_SIZE = 32;
/** Batches smaller than this are checksummed on this thread (the hand-off costs ~0.1 ms). */
const MIN_SPLIT_BYTES = 256 * 1024;
/** Bytes of blocks the helper takes per batch at most (the shared data area). */
const SHARED_DATA = 16 * 1024 * 1024;
/** Most blocks the helper takes per batch: the smallest blocks filling the data area. */
const SHARED_BLOCKS = SHARED_DATA / MIN_BLOCK_SIZE;
/** Where the helper finds the blocks' lengths and puts digests and CRCs, after the blocks. */
const DIGESTS_AT = SHARED_DATA;
const CRCS_AT = DIGESTS_AT + SHARED_BLOCKS * HASH_SIZE;
const LENGTHS_AT = CRCS_AT + SHARED_BLOCKS * 4;
const SHARED_BYTES = LENGTHS_AT + SHARED_BLOCKS * 4;

// The helper's code, self-contained: it runs the same from the sources and the
// build, and as CommonJS or as a module (a worker inherits --input-type=module).
const HELPER = `
const { parentPort, workerData } = process.getBuiltinModule('node:worker_threads');
const { createHash } = process.getBuiltinModule('node:crypto');
const { crc32 } = process.getBuiltinModule('node:zlib');
const mem = Buffer.from(workerData.shared);
const lengths = new Int32Array(workerData.shared, ${LENGTHS_AT}, ${SHARED_BLOCKS});
parentPort.on('message', ({ count, crc, sha }) => {
  let at = 0;
  for (let i = 0; i < count; i++) {
    const block = mem.subarray(at, at + lengths[i]);
    if (crc) mem.writeUInt32LE(crc32(block), ${CRCS_AT} + i * 4);
    if (sha) createHash('sha256').update(block).digest().copy(mem, ${DIGESTS_AT} + i * ${HASH_SIZE});
    at += lengths[i];
  }
  parentPort.postMessage(null);
});
parentPort.postMessage('ready');
`;

/** Which checksums to compute. */
export interface ChecksumKinds {
  readonly crc32: boolean;
  readonly sha256: boolean;
}

/** The checksums of a batch of blocks, by position in the batch. */
export interface BlockChecksums {
  /** CRC-32 of each block when asked for (0 for a null one, or when not asked for). */
  readonly crcs: Uint32Array;
  /** SHA-256 of each non-null block when asked for; undefined otherwise. */
  readonly hashes: readonly (Buffer | undefined)[];
}

interface Helper {
  readonly worker: Worker;
  readonly mem: Buffer;
  readonly lengths: Int32Array;
  /** Whether it has started (its first message); until then no batch is given to it. */
  ready: boolean;
  busy: boolean;
  /** Batches it has checksummed (for tests and diagnostics). */
  jobs: number;
  /** Settles the job in hand: true when done, false when the helper failed. */
  done: ((ok: boolean) => void) | undefined;
}

let helper: Helper | undefined;
let helperFailed = false;
/** Waiting for the helper to start or fail (see whenHelperReady). */
let readyWaiters: ((ready: boolean) => void)[] = [];

function notifyReady(ready: boolean): void {
  const waiters = readyWaiters;
  readyWaiters = [];
  for (const w of waiters) w(ready);
}

function startHelper(): Helper | undefined {
  if (helperFailed) return undefined;
  if (helper !== undefined) return helper;
  try {
    const shared = new SharedArrayBuffer(SHARED_BYTES);
    const worker = new Worker(HELPER, { eval: true, workerData: { shared } });
    const h: Helper = { worker, mem: Buffer.from(shared), lengths: new Int32Array(shared, LENGTHS_AT, SHARED_BLOCKS), ready: false, busy: false, jobs: 0, done: undefined };
    worker.unref();
    const settle = (ok: boolean): void => {
      const done = h.done;
      h.done = undefined;
      done?.(ok);
    };
    const fail = (): void => {
      helperFailed = true;
      helper = undefined;
      settle(false);
      notifyReady(false);
    };
    worker.on('message', () => {
      if (h.ready) return settle(true);
      h.ready = true;
      // Referenced only while someone waited for this (see whenHelperReady); no
      // batch is given to it before now, so none holds it.
      worker.unref();
      notifyReady(true);
    });
    worker.on('error', fail);
    worker.on('exit', fail);
    helper = h;
    return h;
  } catch {
    helperFailed = true;
    return undefined;
  }
}

/** Whether the helper thread has been started and has not failed (for tests and diagnostics). */
export function helperRunning(): boolean {
  return helper !== undefined;
}

/** Batches the helper thread has checksummed so far (for tests and diagnostics). */
export function helperJobs(): number {
  return helper?.jobs ?? 0;
}

/**
 * Starts the helper thread unless it runs already; resolves once it takes batches
 * (true), or cannot (false). For tests, and for callers that know a long run of
 * SHA-256 batches is coming and would rather have the helper from the first one.
 */
export function whenHelperReady(): Promise<boolean> {
  const h = startHelper();
  if (h === undefined) return Promise.resolve(false);
  if (h.ready) return Promise.resolve(true);
  // Referenced until it has started: a process whose only pending work is this wait
  // must not exit first.
  h.worker.ref();
  return new Promise((resolve) => readyWaiters.push(resolve));
}

/** The CRC-32 and/or SHA-256 (as `kinds` asks) of every non-null block. */
export async function checksumBlocks(blocks: readonly (Uint8Array | null)[], kinds: ChecksumKinds): Promise<BlockChecksums> {
  const crcs = new Uint32Array(blocks.length);
  const hashes = new Array<Buffer | undefined>(blocks.length).fill(undefined);
  const here = (i: number): void => {
    if (kinds.crc32) crcs[i] = crc32(blocks[i]!);
    if (kinds.sha256) hashes[i] = sha256(blocks[i]!);
  };
  const todo: number[] = [];
  let bytes = 0;
  blocks.forEach((b, i) => {
    if (b !== null) {
      todo.push(i);
      bytes += b.length;
    }
  });
  const h = kinds.sha256 && bytes >= MIN_SPLIT_BYTES && todo.length >= 2 ? startHelper() : undefined;
  if (h === undefined || !h.ready || h.busy) {
    todo.forEach(here);
    return { crcs, hashes };
  }
  // The helper takes the last half, or the last blocks the shared area holds;
  // this thread the others.
  let split = todo.length;
  let shared = 0;
  while (split > Math.ceil(todo.length / 2) && todo.length - split < SHARED_BLOCKS && shared + blocks[todo[split - 1]!]!.length <= SHARED_DATA) {
    split--;
    shared += blocks[todo[split]!]!.length;
  }
  const mine = todo.slice(0, split);
  const theirs = todo.slice(split);
  if (theirs.length === 0) {
    todo.forEach(here);
    return { crcs, hashes };
  }
  let at = 0;
  for (const i of theirs) {
    h.mem.set(blocks[i]!, at);
    at += blocks[i]!.length;
  }
  theirs.forEach((i, k) => (h.lengths[k] = blocks[i]!.length));
  h.busy = true;
  h.worker.ref();
  const finished = new Promise<boolean>((resolve) => (h.done = resolve));
  try {
    h.worker.postMessage({ count: theirs.length, crc: kinds.crc32, sha: kinds.sha256 });
  } catch {
    h.done?.(false); // not handed over: all of it is done here
    h.done = undefined;
  }
  let ok = false;
  try {
    mine.forEach(here);
  } finally {
    // Whatever happened here, the helper's job is waited for before its memory is
    // reused (and before it is let go, so it never stays busy or keeps the process up).
    ok = await finished;
    if (ok) h.jobs++;
    h.worker.unref();
    h.busy = false;
  }
  theirs.forEach((i, k) => {
    if (!ok) return here(i);
    if (kinds.crc32) crcs[i] = h.mem.readUInt32LE(CRCS_AT + k * 4);
    if (kinds.sha256) hashes[i] = Buffer.from(h.mem.subarray(DIGESTS_AT + k * HASH_SIZE, DIGESTS_AT + (k + 1) * HASH_SIZE));
  });
  return { crcs, hashes };
}
