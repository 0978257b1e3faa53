/**
 * A FIFO of received bytes from which whole messages are taken. Pure: the caller
 * pushes what the socket delivered and takes exact lengths out.
 *
 * Taking `n` bytes that lie within one received chunk costs no copy (a view of
 * it); only messages that straddle chunks are copied once. `discard` drops bytes
 * without keeping them, so a payload we refuse is skipped, not buffered.
 */
export class ByteQueue {
  readonly #chunks: Buffer[] = [];
  /** Read position in the first chunk. */
  #head = 0;
  #length = 0;

  /** Bytes queued. */
  get length(): number {
    return this.#length;
  }

  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.#chunks.push(chunk);
    this.#length += chunk.length;
  }

  /** Takes exactly `n` bytes, or returns undefined (taking nothing) when fewer are queued. */
  take(n: number): Buffer | undefined {
    if (n > this.#length) return undefined;
    if (n === 0) return Buffer.alloc(0);
    const first = this.#chunks[0]!;
    if (first.length - this.#head >= n) {
      const out = first.subarray(this.#head, this.#head + n);
      this.#advance(n);
      return out;
    }
    const out = Buffer.allocUnsafe(n);
    let filled = 0;
    while (filled < n) {
      const chunk = this.#chunks[0]!;
      const k = Math.min(n - filled, chunk.length - this.#head);
      chunk.copy(out, filled, this.#head, this.#head + k);
      filled += k;
      this.#advance(k);
    }
    return out;
  }

  /** Drops up to `n` bytes; returns how many were dropped. */
  discard(n: number): number {
    const k = Math.min(n, this.#length);
    let left = k;
    while (left > 0) {
      const chunk = this.#chunks[0]!;
      const step = Math.min(left, chunk.length - this.#head);
      this.#advance(step);
      left -= step;
    }
    return k;
  }

  /** Drops everything. */
  clear(): void {
    this.#chunks.length = 0;
    this.#head = 0;
    this.#length = 0;
  }

  #advance(n: number): void {
    this.#head += n;
    this.#length -= n;
    if (this.#head === this.#chunks[0]!.length) {
      this.#chunks.shift();
      this.#head = 0;
    }
  }
}
