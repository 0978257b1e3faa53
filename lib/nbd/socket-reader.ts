/**
 * Pull-style reading of exact lengths from a stream socket, with backpressure.
 *
 * The connection code asks for "the next 28 bytes", "the next 65536 bytes" and
 * awaits them. The socket is paused whenever more than `highWater` bytes are
 * queued beyond what a pending read needs, so a client that floods requests while
 * we are busy fills its own TCP window, not our memory. At end of stream a pending
 * or later read resolves to `undefined` (a clean end between messages) or rejects
 * with PROTOCOL_ERROR (the peer hung up inside a message).
 */
import type { Duplex } from 'node:stream';
import { DeltaDiskError } from '../errors.js';
import { ByteQueue } from './byte-queue.js';

interface Waiter {
  readonly n: number;
  readonly skip: boolean;
  skipped: number;
  readonly resolve: (b: Buffer | undefined) => void;
  readonly reject: (e: Error) => void;
}

export class SocketReader {
  readonly #socket: Duplex;
  readonly #queue = new ByteQueue();
  readonly #highWater: number;
  #waiter: Waiter | undefined;
  #ended = false;
  #error: Error | undefined;
  #paused = false;

  /** @param head bytes already read from the socket that belong in front of what follows. */
  constructor(socket: Duplex, highWater = 256 * 1024, head?: Buffer) {
    this.#socket = socket;
    this.#highWater = highWater;
    if (head !== undefined) this.#queue.push(head);
    socket.on('data', (chunk: Buffer) => {
      this.#queue.push(chunk);
      this.#serve();
      this.#regulate();
    });
    socket.on('end', () => {
      this.#ended = true;
      this.#serve();
    });
    socket.on('close', () => {
      this.#ended = true;
      this.#serve();
    });
    socket.on('error', (err: Error) => {
      this.#error ??= err;
      this.#ended = true;
      this.#serve();
    });
    socket.resume();
  }

  /** True once the peer has finished sending (or the socket failed). */
  get ended(): boolean {
    return this.#ended;
  }

  /** Bytes received but not yet taken. */
  get buffered(): number {
    return this.#queue.length;
  }

  /**
   * The next `n` bytes. Resolves `undefined` when the stream ends before any of
   * them arrived and `n` > 0; rejects when it ends part-way.
   */
  read(n: number): Promise<Buffer | undefined> {
    return this.#wait(n, false);
  }

  /** Drops the next `n` bytes as they arrive, without holding them. */
  async skip(n: number): Promise<void> {
    await this.#wait(n, true);
  }

  /** Stops reading: later reads resolve `undefined` and nothing more is buffered. */
  stop(): void {
    this.#ended = true;
    this.#queue.clear();
    this.#socket.pause();
    this.#paused = true;
    this.#serve();
  }

  #wait(n: number, skip: boolean): Promise<Buffer | undefined> {
    if (this.#waiter !== undefined) return Promise.reject(new Error('SocketReader: one read at a time'));
    return new Promise((resolve, reject) => {
      this.#waiter = { n, skip, skipped: 0, resolve, reject };
      this.#serve();
      this.#regulate();
    });
  }

  #serve(): void {
    const w = this.#waiter;
    if (w === undefined) return;
    if (w.skip) {
      w.skipped += this.#queue.discard(w.n - w.skipped);
      if (w.skipped === w.n) return this.#settle(() => w.resolve(undefined));
    } else {
      const got = this.#queue.take(w.n);
      if (got !== undefined) return this.#settle(() => w.resolve(got));
    }
    if (!this.#ended) return;
    const partial = this.#queue.length > 0 || w.skipped > 0;
    this.#queue.clear();
    if (!partial && this.#error === undefined) return this.#settle(() => w.resolve(undefined));
    const why = this.#error === undefined ? 'the peer closed the connection inside a message' : `connection failed: ${this.#error.message}`;
    this.#settle(() => w.reject(new DeltaDiskError('PROTOCOL_ERROR', why, { cause: this.#error })));
  }

  #settle(fn: () => void): void {
    this.#waiter = undefined;
    fn();
    this.#regulate();
  }

  /** Pauses the socket when enough is queued for the pending read and then some. */
  #regulate(): void {
    if (this.#ended) return;
    const want = this.#waiter === undefined ? 0 : this.#waiter.skip ? 0 : this.#waiter.n;
    const full = this.#queue.length >= Math.max(want, this.#highWater);
    if (full && !this.#paused) {
      this.#socket.pause();
      this.#paused = true;
    } else if (!full && this.#paused) {
      this.#paused = false;
      this.#socket.resume();
    }
  }
}
