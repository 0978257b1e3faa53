/**
 * One NBD client connection on the server: the handshake, then the request loop,
 * then a clean close.
 *
 * It never throws and never leaves the process with an unhandled error: whatever
 * the client does (garbage, a half-closed socket, a reset, silence), `run()`
 * resolves once the socket is closed and the export it opened is released. The
 * handshake must finish within `handshakeTimeoutMs`; an idle connection in the
 * transmission phase is legitimate and stays. On `stop()` (server shutdown) no
 * further request is read, requests in flight are answered, and the connection
 * closes; a client still haggling gets NBD_REP_ERR_SHUTDOWN and a short grace.
 */
import type { Socket } from 'node:net';
import { DeltaDiskError } from '../errors.js';
import { BufferPool } from '../io/buffer-pool.js';
import type { ExportCatalog } from './disk-exports.js';
import { negotiate, type Negotiated } from './negotiation.js';
import { SocketReader } from './socket-reader.js';
import { DEFAULT_LIMITS, RequestLoop, type TransmissionLimits } from './transmission.js';

/** Time a closing connection gets to deliver its last replies to a client that stopped reading. */
const FLUSH_GRACE_MS = 10_000;

export interface ConnectionOptions {
  readonly catalog: ExportCatalog;
  readonly limits?: TransmissionLimits;
  /** Reply buffers, shared by the connections of a server. */
  readonly pool?: BufferPool;
  /** Time allowed from connect to the chosen export; default 30 s. */
  readonly handshakeTimeoutMs?: number;
  /** Grace for a client haggling when the server stops; default 1 s. */
  readonly shutdownGraceMs?: number;
  readonly log?: (message: string) => void;
}

export class NbdConnection {
  readonly #socket: Socket;
  readonly #reader: SocketReader;
  readonly #options: ConnectionOptions;
  readonly #log: (message: string) => void;
  readonly #peer: string;
  #phase: 'handshake' | 'transmission' | 'closing' = 'handshake';
  #stopping = false;
  #corked = false;
  #closed: Promise<void>;

  constructor(socket: Socket, options: ConnectionOptions) {
    this.#socket = socket;
    this.#options = options;
    const log = options.log ?? (() => undefined);
    this.#peer = socket.remoteAddress === undefined ? 'local client' : `${socket.remoteAddress}:${socket.remotePort ?? ''}`;
    this.#log = (m) => log(`${this.#peer}: ${m}`);
    socket.setNoDelay?.(true);
    this.#reader = new SocketReader(socket);
    this.#closed = new Promise((resolve) => socket.once('close', () => resolve()));
  }

  /** Serves the connection to its end. Never rejects. */
  async run(): Promise<void> {
    let hard = false;
    let negotiated: Negotiated | undefined;
    const timer = setTimeout(() => {
      this.#log('handshake timed out');
      this.#socket.destroy();
    }, this.#options.handshakeTimeoutMs ?? 30_000);
    try {
      negotiated = await negotiate(
        {
          read: (n) => this.#reader.read(n),
          skip: (n) => this.#reader.skip(n),
          send: (data) => this.#write([data]),
          shuttingDown: () => this.#stopping,
        },
        this.#options.catalog,
      );
      clearTimeout(timer);
      if (negotiated !== undefined) {
        this.#phase = 'transmission';
        if (this.#stopping) this.#reader.stop();
        hard = await this.#transmit(negotiated);
      }
    } catch (err) {
      hard = true;
      this.#complain(err);
    } finally {
      clearTimeout(timer);
      this.#phase = 'closing';
      await negotiated?.export.release().catch((err: unknown) => this.#complain(err));
      this.#finish(hard);
      await this.#closed;
    }
  }

  /** Asks the connection to wind down (server shutdown). */
  stop(): void {
    if (this.#stopping) return;
    this.#stopping = true;
    if (this.#phase === 'transmission') this.#reader.stop();
    else if (this.#phase === 'handshake') {
      setTimeout(() => this.#socket.destroy(), this.#options.shutdownGraceMs ?? 1000).unref();
    }
  }

  /** Destroys the socket at once (the server is gone). */
  kill(): void {
    this.#socket.destroy();
  }

  /** @returns true when the connection must end with a hard disconnect. */
  async #transmit(n: Negotiated): Promise<boolean> {
    const loop = new RequestLoop(
      {
        read: (k) => this.#reader.read(k),
        skip: (k) => this.#reader.skip(k),
        send: (buffers, sent) => this.#write(buffers, sent),
        stopped: () => this.#stopping || this.#socket.destroyed,
      },
      n,
      this.#options.limits ?? DEFAULT_LIMITS,
      this.#options.pool ?? new BufferPool(),
      this.#log,
    );
    let hard = false;
    try {
      await loop.run();
    } catch (err) {
      hard = true;
      this.#complain(err);
      this.#reader.stop();
    }
    // Requests already read are answered (and their writes done) even after a protocol error.
    await loop.idle();
    return hard;
  }

  #write(buffers: readonly Buffer[], sent?: () => void): void {
    const s = this.#socket;
    if (s.destroyed || !s.writable) {
      sent?.();
      return;
    }
    // Replies finished in the same turn of the event loop leave in one writev.
    if (!this.#corked) {
      this.#corked = true;
      s.cork();
      setImmediate(() => {
        this.#corked = false;
        s.uncork();
      });
    }
    for (let i = 0; i < buffers.length - 1; i++) s.write(buffers[i]!);
    s.write(buffers[buffers.length - 1]!, () => sent?.());
  }

  /**
   * Closes the connection. Replies already queued go out first, also before a hard
   * disconnect (they answer requests the client sent before breaking the
   * protocol); the socket is released even if the peer keeps its side open, and
   * at the latest after FLUSH_GRACE_MS if it stops reading.
   */
  #finish(hard: boolean): void {
    const s = this.#socket;
    if (s.destroyed) return;
    if (this.#corked) {
      this.#corked = false;
      s.uncork();
    }
    const timer = setTimeout(() => s.destroy(), hard ? 1000 : FLUSH_GRACE_MS);
    timer.unref();
    s.end(() => {
      clearTimeout(timer);
      s.destroy();
    });
  }

  #complain(err: unknown): void {
    if (err instanceof DeltaDiskError) this.#log(`${err.message} [${err.code}]; disconnecting`);
    else this.#log(`unexpected error, disconnecting: ${(err as Error)?.stack ?? String(err)}`);
  }
}
