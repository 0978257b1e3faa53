/**
 * The control channel of a served disk: a Unix socket `<disk>.ctl` beside the
 * descriptor through which other processes take, list and delete snapshots while
 * the disk is served, read a change map, or open an NBD session on any export.
 *
 * The serving process holds the disk's writer lock, so it is the only one that
 * may change the disk; this channel is how everyone else asks it to. Requests are
 * answered one at a time per connection, in order; a snapshot is taken between
 * NBD requests (DiskExports.snapshot). The socket is mode 0600, replaces a stale
 * one left by a killed server, and is removed on close. Protocol: control-protocol.ts.
 */
import net from 'node:net';
import path from 'node:path';
import { DeltaDiskError } from '../errors.js';
import {
  CONTROL_PROTOCOL,
  CONTROL_VERSION,
  LineSplitter,
  MAX_CONTROL_LINE,
  decodeRequest,
  encodeLine,
  toRuns,
  type ControlHello,
  type ControlRequest,
} from './control-protocol.js';
import type { NbdServer } from './server.js';
import { listenUnix, type BoundSocket } from './unix-socket.js';

/** The control socket of the disk whose descriptor is `diskPath`. */
export function controlPathFor(diskPath: string): string {
  return `${path.resolve(diskPath)}.ctl`;
}

export interface ControlServerOptions {
  /** Socket path; default controlPathFor(disk). */
  readonly path?: string;
  /** Control clients at once; default 16. */
  readonly maxClients?: number;
  readonly log?: (message: string) => void;
}

export class ControlServer {
  readonly path: string;
  readonly #bound: BoundSocket;
  readonly #clients = new Set<net.Socket>();

  private constructor(bound: BoundSocket) {
    this.#bound = bound;
    this.path = bound.path;
  }

  /**
   * Opens the control socket of the disk `nbd` serves.
   * @throws LOCKED (another live server answers there), ALREADY_EXISTS (a file that is not a socket), LIMIT_EXCEEDED, IO_ERROR
   */
  static async start(nbd: NbdServer, options: ControlServerOptions = {}): Promise<ControlServer> {
    const exports = nbd.exports;
    const hello: ControlHello = {
      protocol: CONTROL_PROTOCOL,
      version: CONTROL_VERSION,
      pid: process.pid,
      disk: path.resolve(exports.disk.path),
      exportName: exports.exportName,
      readOnly: exports.readOnly,
      virtualSize: exports.disk.virtualSize,
      blockSize: exports.disk.blockSize,
      uri: nbd.uri(),
    };
    const max = options.maxClients ?? 16;
    let self: ControlServer | undefined;
    const server = net.createServer({ allowHalfOpen: false }, (socket) => {
      socket.on('error', () => undefined);
      if (self === undefined || self.#clients.size >= max) {
        socket.destroy();
        return;
      }
      const clients = self.#clients;
      clients.add(socket);
      socket.once('close', () => clients.delete(socket));
      new ControlSession(socket, nbd, hello, options.log ?? (() => undefined), () => clients.delete(socket));
    });
    const bound = await listenUnix(server, options.path ?? controlPathFor(exports.disk.path), 0o600);
    self = new ControlServer(bound);
    return self;
  }

  /** Stops listening, removes the socket file and hangs up on control clients (NBD sessions stay). */
  async close(): Promise<void> {
    await this.#bound.release();
    for (const s of this.#clients) s.destroy();
  }

  /** Removes the socket file now (for a process exit handler). */
  removeSocketFile(): Promise<void> {
    return this.#bound.release();
  }
}

class ControlSession {
  readonly #socket: net.Socket;
  readonly #nbd: NbdServer;
  readonly #log: (message: string) => void;
  /** Called when the socket stops being a control session (handed to NBD). */
  readonly #release: () => void;
  readonly #lines = new LineSplitter(MAX_CONTROL_LINE);
  readonly #queue: string[] = [];
  #busy = false;
  #handedOver = false;
  readonly #onData = (chunk: Buffer): void => this.#data(chunk);

  constructor(socket: net.Socket, nbd: NbdServer, hello: ControlHello, log: (message: string) => void, release: () => void) {
    this.#socket = socket;
    this.#nbd = nbd;
    this.#log = log;
    this.#release = release;
    socket.on('data', this.#onData);
    socket.write(encodeLine(hello));
  }

  #data(chunk: Buffer): void {
    try {
      this.#queue.push(...this.#lines.push(chunk));
    } catch (err) {
      this.#log(`control client: ${(err as Error).message}; disconnecting`);
      this.#socket.destroy();
      return;
    }
    void this.#drain();
  }

  async #drain(): Promise<void> {
    if (this.#busy) return;
    this.#busy = true;
    try {
      while (this.#queue.length > 0 && !this.#socket.destroyed && !this.#handedOver) {
        const line = this.#queue.shift()!;
        let req: ControlRequest;
        try {
          req = decodeRequest(line);
        } catch (err) {
          this.#log(`control client: ${(err as Error).message}; disconnecting`);
          this.#socket.end(encodeLine({ id: null, ok: false, error: { code: 'PROTOCOL_ERROR', message: (err as Error).message } }));
          return;
        }
        await this.#handle(req);
      }
    } finally {
      this.#busy = false;
    }
  }

  async #handle(req: ControlRequest): Promise<void> {
    if (req.op === 'nbd') return this.#handOver(req.id);
    try {
      const result = await this.#run(req);
      this.#socket.write(encodeLine({ id: req.id, ok: true, result }));
    } catch (err) {
      const e = err instanceof DeltaDiskError ? err : new DeltaDiskError('IO_ERROR', `unexpected failure: ${String((err as Error)?.message ?? err)}`);
      if (!(err instanceof DeltaDiskError)) this.#log(`control ${req.op} failed unexpectedly: ${(err as Error)?.stack ?? String(err)}`);
      this.#socket.write(encodeLine({ id: req.id, ok: false, error: { code: e.code, message: e.message } }));
    }
  }

  async #run(req: Exclude<ControlRequest, { op: 'nbd' }>): Promise<unknown> {
    const exports = this.#nbd.exports;
    const disk = exports.disk;
    switch (req.op) {
      case 'list':
        return disk.snapshots();
      case 'info':
        return disk.info();
      case 'snapshot':
        return exports.snapshot(req.name, req.description);
      case 'delete':
        await exports.deleteSnapshot(req.name);
        return { deleted: req.name };
      case 'changed-blocks':
        return { blockSize: disk.blockSize, runs: toRuns(await disk.changedBlocks(req.from, req.to ?? undefined)) };
    }
  }

  /** Answers the `nbd` request, then gives the socket to the NBD server. */
  #handOver(id: number): void {
    if (this.#queue.length > 0 || this.#lines.pending > 0) {
      this.#socket.destroy();
      return;
    }
    this.#handedOver = true;
    this.#socket.off('data', this.#onData);
    this.#socket.pause();
    this.#socket.write(encodeLine({ id, ok: true, result: { nbd: true } }));
    this.#release();
    this.#nbd.attach(this.#socket);
  }
}
