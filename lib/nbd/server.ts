/**
 * An NBD server for a disk: listens on TCP or a Unix socket and serves the
 * exports of a DiskExports (the current state, and every snapshot read-only) to
 * any number of clients at once, up to `maxConnections`.
 *
 * The server does not own the disk: `close()` stops accepting, lets every
 * connection answer what it has read, closes them, and flushes the disk; closing
 * the disk is the caller's job. A connection beyond the limit is closed before the
 * greeting. Connections accepted elsewhere (the control channel hands over its
 * socket for an NBD session) are served with `attach`.
 */
import net from 'node:net';
import { DeltaDiskError, fromSystemError } from '../errors.js';
import { BufferPool } from '../io/buffer-pool.js';
import { NbdConnection } from './connection.js';
import type { DiskExports } from './disk-exports.js';
import { DEFAULT_LIMITS, type TransmissionLimits } from './transmission.js';
import { closeServer, listenUnix, type BoundSocket } from './unix-socket.js';

export type ListenAddress = { readonly host: string; readonly port: number } | { readonly path: string };

export type BoundAddress =
  | { readonly kind: 'tcp'; readonly host: string; readonly port: number }
  | { readonly kind: 'unix'; readonly path: string };

export interface NbdServerOptions {
  /** Clients served at once; default 64. */
  readonly maxConnections?: number;
  readonly limits?: TransmissionLimits;
  readonly handshakeTimeoutMs?: number;
  /** Where to report client misbehaviour and failed requests (one line each). */
  readonly log?: (message: string) => void;
}

export const DEFAULT_MAX_CONNECTIONS = 64;

export class NbdServer {
  readonly exports: DiskExports;
  readonly address: BoundAddress;
  readonly #server: net.Server;
  readonly #unix: BoundSocket | undefined;
  readonly #options: NbdServerOptions;
  readonly #connections = new Set<NbdConnection>();
  readonly #pool = new BufferPool();
  #closing: Promise<void> | undefined;

  private constructor(exports: DiskExports, server: net.Server, address: BoundAddress, unix: BoundSocket | undefined, options: NbdServerOptions) {
    this.exports = exports;
    this.#server = server;
    this.address = address;
    this.#unix = unix;
    this.#options = options;
  }

  /**
   * Starts serving `exports` on `listen`.
   * @throws INVALID_ARGUMENT, LOCKED / ALREADY_EXISTS (socket path in use), IO_ERROR (address in use …)
   */
  static async listen(exports: DiskExports, listen: ListenAddress, options: NbdServerOptions = {}): Promise<NbdServer> {
    const max = options.maxConnections ?? DEFAULT_MAX_CONNECTIONS;
    if (!Number.isSafeInteger(max) || max < 1) throw new DeltaDiskError('INVALID_ARGUMENT', `maxConnections must be a positive integer, got ${max}`);
    let self: NbdServer | undefined;
    const pending: net.Socket[] = [];
    const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, (socket) => {
      if (self === undefined) pending.push(socket);
      else self.attach(socket);
    });
    let address: BoundAddress;
    let unix: BoundSocket | undefined;
    if ('path' in listen) {
      unix = await listenUnix(server, listen.path, 0o600);
      address = { kind: 'unix', path: unix.path };
    } else {
      if (!Number.isSafeInteger(listen.port) || listen.port < 0 || listen.port > 65535) {
        throw new DeltaDiskError('INVALID_ARGUMENT', `port ${listen.port} is not a TCP port`);
      }
      await new Promise<void>((resolve, reject) => {
        server.once('error', (err) => reject(fromSystemError(err, undefined, `listening on ${listen.host}:${listen.port} failed`)));
        server.listen({ host: listen.host, port: listen.port }, () => resolve());
      });
      const a = server.address() as net.AddressInfo;
      address = { kind: 'tcp', host: a.address, port: a.port };
    }
    server.on('error', (err) => options.log?.(`server socket error: ${err.message}`));
    self = new NbdServer(exports, server, address, unix, options);
    for (const s of pending) self.attach(s);
    return self;
  }

  /** Clients connected now. */
  get connections(): number {
    return this.#connections.size;
  }

  /** An nbd:// URI of an export (`nbd+unix:///name?socket=…` for a Unix socket). */
  uri(exportName = this.exports.exportName): string {
    const name = encodeURIComponent(exportName);
    const a = this.address;
    if (a.kind === 'unix') return `nbd+unix:///${name}?socket=${encodeURIComponent(a.path)}`;
    const host = a.host.includes(':') ? `[${a.host}]` : a.host;
    return `nbd://${host}:${a.port}/${name}`;
  }

  /** Serves NBD on an already connected socket. */
  attach(socket: net.Socket): void {
    socket.on('error', () => undefined);
    if (this.#closing !== undefined || this.#connections.size >= (this.#options.maxConnections ?? DEFAULT_MAX_CONNECTIONS)) {
      this.#options.log?.(this.#closing === undefined ? 'connection refused: too many clients' : 'connection refused: shutting down');
      socket.destroy();
      return;
    }
    const conn = new NbdConnection(socket, {
      catalog: this.exports,
      limits: this.#options.limits ?? DEFAULT_LIMITS,
      pool: this.#pool,
      ...(this.#options.handshakeTimeoutMs === undefined ? {} : { handshakeTimeoutMs: this.#options.handshakeTimeoutMs }),
      ...(this.#options.log === undefined ? {} : { log: this.#options.log }),
    });
    this.#connections.add(conn);
    socket.resume();
    void conn.run().finally(() => this.#connections.delete(conn));
  }

  /**
   * Stops accepting, winds every connection down (requests already read are
   * answered), then flushes the disk. Idempotent.
   * @param graceMs after this long, connections still open are cut.
   */
  close(graceMs = 10_000): Promise<void> {
    this.#closing ??= this.#close(graceMs);
    return this.#closing;
  }

  async #close(graceMs: number): Promise<void> {
    if (this.#unix !== undefined) await this.#unix.release();
    else await closeServer(this.#server);
    const conns = [...this.#connections];
    for (const c of conns) c.stop();
    const drained = new Promise<void>((resolve) => {
      const check = (): void => {
        if (this.#connections.size === 0) resolve();
        else setTimeout(check, 10);
      };
      check();
    });
    const cut = setTimeout(() => {
      for (const c of this.#connections) c.kill();
    }, graceMs);
    await drained;
    clearTimeout(cut);
    const disk = this.exports.disk;
    if (!disk.readOnly && !disk.closed) await disk.flush();
  }
}
