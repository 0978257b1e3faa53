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
 */
const MIN_CLASS = 4096;

export class BufferPool {
  readonly #maxBytes: number;
  readonly #free = new Map<number, ArrayBuffer[]>();
  /** Backing stores this pool made. */
  readonly #ours = new WeakSet<ArrayBuffer>();
  /** Backing stores now in the free lists. */
  readonly #idle = new WeakSet<ArrayBuffer>();
  #pooledBytes = 0;

  constructor(maxBytes = 64 * 1024 * 1024) {
    this.#maxBytes = maxBytes;
  }

  /** Bytes held in the free lists. */
  get pooledBytes(): number {
    return this.#pooledBytes;
  }

  /** The memory a buffer of `length` bytes from this pool holds (its size class). */
  static sizeFor(length: number): number {
    return classOf(length);
  }

  /** A buffer of exactly `length` bytes (contents undefined). */
  acquire(length: number): Buffer {
    const size = classOf(length);
    const list = this.#free.get(size);
    let ab = list?.pop();
    if (ab !== undefined) {
      this.#idle.delete(ab);
      this.#pooledBytes -= size;
    } else {
      ab = new ArrayBuffer(size);
      this.#ours.add(ab);
    }
    return Buffer.from(ab, 0, length);
  }

  /** Gives a buffer from `acquire` back. */
  release(buf: Buffer): void {
    const ab = buf.buffer as ArrayBuffer;
    if (!this.#ours.has(ab) || this.#idle.has(ab)) return;
    const size = ab.byteLength;
    if (this.#pooledBytes + size > this.#maxBytes) return;
    let list = this.#free.get(size);
    if (list === undefined) this.#free.set(size, (list = []));
    list.push(ab);
    this.#idle.add(ab);
    this.#pooledBytes += size;
  }
}

function classOf(length: number): number {
  let size = MIN_CLASS;
  while (size < length) size *= 2;
  return size;
}
