/**
 * Reusable read buffers: the NBD server's replies, and a backup's reads of a chain's
 * short runs (an incremental backup reads mostly single chunks).
 *
 * Reads come in a few fixed sizes (256 KiB from nbdcopy, 64 KiB from QEMU or a
 * chunk, 4 KiB random I/O); allocating a fresh buffer for each and faulting its
 * pages in cost a third of the NBD read throughput, and the collections those
 * buffers set off most of an incremental backup's. Buffers are kept by size class
 * (powers of two from 4 KiB to 32 MiB), up to `maxBytes` in all, and handed out
 * as views of exactly the length asked for.
 *
 * A buffer must be released exactly once, after its last use (when the socket has
 * taken the reply); releasing a buffer twice or one the pool did not make is
 * ignored, so two requests can never share memory.
 *
 * An `aligned` pool hands out page-aligned buffers (`alignedBuffer`) for direct
 * I/O, from 64 KiB (a WebAssembly page) up: `alignedPool`, the process's, serves a
 * restore's staging buffers and its reads of packs. Memory a process touches for
 * the first time costs a page fault per page, which on a VM whose free memory went
 * back to the host dominates a large transfer; a reused buffer costs nothing.
 */
import { alignedBuffer, isDirectAligned } from './aligned-buffer.js';

const MIN_CLASS = 4096;
const MIN_ALIGNED_CLASS = 65536;

export class BufferPool {
  readonly #maxBytes: number;
  readonly #aligned: boolean;
  readonly #free = new Map<number, ArrayBufferLike[]>();
  /** Backing stores this pool made. */
  readonly #ours = new WeakSet<ArrayBufferLike>();
  /** Backing stores now in the free lists. */
  readonly #idle = new WeakSet<ArrayBufferLike>();
  #pooledBytes = 0;

  constructor(maxBytes = 64 * 1024 * 1024, options: { aligned?: boolean } = {}) {
    this.#maxBytes = maxBytes;
    this.#aligned = options.aligned === true;
  }

  /** Bytes held in the free lists. */
  get pooledBytes(): number {
    return this.#pooledBytes;
  }

  /** The memory a buffer of `length` bytes from this pool holds (its size class). */
  static sizeFor(length: number): number {
    return classOf(length, MIN_CLASS);
  }

  /** A buffer of exactly `length` bytes (contents undefined). */
  acquire(length: number): Buffer {
    const size = classOf(length, this.#aligned ? MIN_ALIGNED_CLASS : MIN_CLASS);
    const list = this.#free.get(size);
    let ab = list?.pop();
    if (ab !== undefined) {
      this.#idle.delete(ab);
      this.#pooledBytes -= size;
    } else if (this.#aligned) {
      const b = alignedBuffer(size);
      ab = b.buffer;
      // Where aligned memory is not to be had, the buffer is not kept: it is no
      // better than a fresh one.
      if (isDirectAligned(b)) this.#ours.add(ab);
    } else {
      // Not zero-filled: contents are undefined anyway, and filling a fresh MiB cost
      // ~0.2 ms of this thread before the read that overwrites it.
      ab = Buffer.allocUnsafeSlow(size).buffer;
      this.#ours.add(ab);
    }
    return Buffer.from(ab, 0, length);
  }

  /** Gives a buffer from `acquire` back. */
  release(buf: Uint8Array): void {
    const ab = buf.buffer;
    if (!this.#ours.has(ab) || this.#idle.has(ab)) return;
    const size = ab.byteLength;
    // Full: smaller buffers make room, when dropping them is enough. The one just
    // used is the likelier to be asked for again (a compaction's staging, after a
    // merge's smaller one), and a large buffer dropped costs a page fault per page
    // when the next is made; a small one is never kept at a large one's expense.
    let smaller = 0;
    for (const [other, list] of this.#free) if (other < size) smaller += other * list.length;
    if (this.#pooledBytes - smaller + size > this.#maxBytes) return;
    for (const [other, list] of [...this.#free].sort((a, b) => a[0] - b[0])) {
      while (this.#pooledBytes + size > this.#maxBytes && other < size && list.length > 0) {
        const dropped = list.pop()!;
        this.#idle.delete(dropped);
        this.#ours.delete(dropped);
        this.#pooledBytes -= other;
      }
    }
    let list = this.#free.get(size);
    if (list === undefined) this.#free.set(size, (list = []));
    list.push(ab);
    this.#idle.add(ab);
    this.#pooledBytes += size;
  }
}

function classOf(length: number, min: number): number {
  let size = min;
  while (size < length) size *= 2;
  return size;
}

/** The process's pool of page-aligned buffers for direct I/O. */
export const alignedPool = new BufferPool(64 * 1024 * 1024, { aligned: true });
