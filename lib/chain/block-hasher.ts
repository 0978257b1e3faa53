/**
 * SHA-256 of the blocks of a write, on two threads.
 *
 * Inline dedup hashes every block written, and SHA-256 runs at ~1.2 GB/s on one
 * core: on the writing thread alone that cost about a third of sequential write
 * throughput. A batch of at least MIN_SPLIT_BYTES is split: one helper thread
 * hashes the second half (copied into memory shared with it) while this thread
 * hashes the first. (The thread pool, through webcrypto, was measured slower than
 * hashing here: its per-call copies and the contention with file writes cost more
 * than the second core gained.)
 *
 * The helper is one process-wide worker, started on first use and referenced only
 * while it holds a job, so it never keeps the process alive. While it is busy with
 * another batch, or once it has failed, batches are hashed here: results never wait
 * on it and never depend on it.
 */
import { Worker } from 'node:worker_threads';
import { MIN_BLOCK_SIZE } from '../format/limits.js';
import { sha256 } from './layer-file.js';

const HASH_SIZE = 32;
/** Batches smaller than this are hashed on this thread (the hand-off costs ~0.1 ms). */
const MIN_SPLIT_BYTES = 256 * 1024;
/** Bytes of blocks the helper takes per batch at most (the shared data area). */
const SHARED_DATA = 16 * 1024 * 1024;
/** Room for the digests of the smallest blocks filling the data area. */
const SHARED_DIGESTS = (SHARED_DATA / MIN_BLOCK_SIZE) * HASH_SIZE;

// The helper's code, self-contained (it runs the same from the sources and the build).
const HELPER = `
const { parentPort, workerData } = require('node:worker_threads');
const { createHash } = require('node:crypto');
const mem = Buffer.from(workerData.shared);
parentPort.on('message', ({ lengths, digests }) => {
  let at = 0;
  for (let i = 0; i < lengths.length; i++) {
    createHash('sha256').update(mem.subarray(at, at + lengths[i])).digest().copy(mem, digests + i * ${HASH_SIZE});
    at += lengths[i];
  }
  parentPort.postMessage(null);
});
`;

interface Helper {
  readonly worker: Worker;
  readonly mem: Buffer;
  busy: boolean;
  done: ((ok: boolean) => void) | undefined;
}

let helper: Helper | undefined;
let helperFailed = false;

function startHelper(): Helper | undefined {
  if (helperFailed) return undefined;
  if (helper !== undefined) return helper;
  try {
    const shared = new SharedArrayBuffer(SHARED_DATA + SHARED_DIGESTS);
    const worker = new Worker(HELPER, { eval: true, workerData: { shared } });
    const h: Helper = { worker, mem: Buffer.from(shared), busy: false, done: undefined };
    worker.unref();
    const fail = (): void => {
      helperFailed = true;
      helper = undefined;
      h.done?.(false);
      h.done = undefined;
    };
    worker.on('message', () => {
      const done = h.done;
      h.done = undefined;
      done?.(true);
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

/** SHA-256 of each non-null block, in order (undefined for null ones). */
export async function hashBlocks(blocks: readonly (Uint8Array | null)[]): Promise<(Buffer | undefined)[]> {
  const out: (Buffer | undefined)[] = new Array<Buffer | undefined>(blocks.length).fill(undefined);
  const todo: number[] = [];
  let bytes = 0;
  blocks.forEach((b, i) => {
    if (b !== null) {
      todo.push(i);
      bytes += b.length;
    }
  });
  const h = bytes >= MIN_SPLIT_BYTES && todo.length >= 2 ? startHelper() : undefined;
  if (h === undefined || h.busy) {
    for (const i of todo) out[i] = sha256(blocks[i]!);
    return out;
  }
  // The helper takes the last half, or the last blocks the shared area holds;
  // this thread the others.
  let split = todo.length;
  let shared = 0;
  while (split > Math.ceil(todo.length / 2) && shared + blocks[todo[split - 1]!]!.length <= SHARED_DATA) {
    split--;
    shared += blocks[todo[split]!]!.length;
  }
  const mine = todo.slice(0, split);
  const theirs = todo.slice(split);
  if (theirs.length === 0) {
    for (const i of mine) out[i] = sha256(blocks[i]!);
    return out;
  }
  let at = 0;
  for (const i of theirs) {
    h.mem.set(blocks[i]!, at);
    at += blocks[i]!.length;
  }
  h.busy = true;
  h.worker.ref();
  const finished = new Promise<boolean>((resolve) => (h.done = resolve));
  h.worker.postMessage({ lengths: theirs.map((i) => blocks[i]!.length), digests: SHARED_DATA });
  for (const i of mine) out[i] = sha256(blocks[i]!);
  const ok = await finished;
  h.worker.unref();
  h.busy = false;
  theirs.forEach((i, k) => {
    out[i] = ok ? Buffer.from(h.mem.subarray(SHARED_DATA + k * HASH_SIZE, SHARED_DATA + (k + 1) * HASH_SIZE)) : sha256(blocks[i]!);
  });
  return out;
}
