/**
 * The client side of a served disk's control channel: what `deltadisk snapshot`
 * and a VM backup use when the disk is locked by `deltadisk serve`.
 *
 *     const ctl = await findControl('vm/disk.chain');        // undefined: not served
 *     const { snapshot, freezeMs } = await ctl.snapshot('backup-1');
 *     const changed = await ctl.changedBlocks('backup-0', 'backup-1');
 *     const reader = await ctl.openExport('backup-1');       // an NbdClient, read-only
 *     const bytes = await reader.read(0, 65536);
 *     await reader.close();
 *     await ctl.deleteSnapshot('backup-0');
 *     await ctl.close();
 *
 * `findControl` tells "nobody serves this disk" (no socket, or a stale one from a
 * killed server) apart from a real failure. Errors the server reports come back as
 * DeltaDiskErrors with the server's code (SNAPSHOT_EXISTS, SNAPSHOT_NOT_FOUND …).
 */
import type net from 'node:net';
import { DeltaDiskError, fromSystemError } from '../errors.js';
import type { DiskInfo, SnapshotInfo } from '../chain/disk.js';
import { NbdClient, type NbdClientOptions } from './client.js';
import {
  LineSplitter,
  MAX_CONTROL_REPLY_LINE,
  decodeHello,
  decodeReply,
  encodeLine,
  fromRuns,
  type ControlHello,
  type ControlReply,
} from './control-protocol.js';
import { controlPathFor } from './control-server.js';
import type { LiveSnapshot } from './disk-exports.js';
import { connectUnix } from './unix-socket.js';

const HELLO_TIMEOUT_MS = 5000;

/** Errors of connect() that mean "no server here". */
const ABSENT = new Set(['ENOENT', 'ECONNREFUSED', 'ENOTSOCK', 'ENOTDIR']);

interface Channel {
  readonly socket: net.Socket;
  readonly hello: ControlHello;
  readonly lines: LineSplitter;
  /** Lines received and not yet consumed. */
  readonly queue: string[];
}

/** Connects and reads the hello; undefined when nothing answers at `socketPath`. */
async function openChannel(socketPath: string): Promise<Channel | undefined> {
  let socket: net.Socket;
  try {
    socket = await connectUnix(socketPath);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== undefined && ABSENT.has(code)) return undefined;
    throw err instanceof DeltaDiskError ? err : fromSystemError(err, socketPath, 'connecting to the control channel failed');
  }
  socket.on('error', () => undefined);
  const lines = new LineSplitter(MAX_CONTROL_REPLY_LINE);
  const queue: string[] = [];
  try {
    const first = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new DeltaDiskError('TIMEOUT', `${socketPath} did not say hello`, { path: socketPath })), HELLO_TIMEOUT_MS);
      const onData = (chunk: Buffer): void => {
        try {
          queue.push(...lines.push(chunk));
        } catch (err) {
          reject(err as Error);
        }
        if (queue.length > 0) {
          clearTimeout(timer);
          socket.off('data', onData);
          socket.pause();
          resolve(queue.shift()!);
        }
      };
      socket.on('data', onData);
      socket.once('close', () => reject(new DeltaDiskError('PROTOCOL_ERROR', `${socketPath} closed before saying hello`, { path: socketPath })));
    });
    return { socket, hello: decodeHello(first), lines, queue };
  } catch (err) {
    socket.destroy();
    throw err;
  }
}

/**
 * The control channel of the disk at `diskPath` if a server answers on it, else
 * undefined (no socket file, or one left behind by a killed server).
 * @throws UNSUPPORTED_VERSION, PROTOCOL_ERROR, TIMEOUT when something answers but not as expected
 */
export async function findControl(diskPath: string): Promise<ControlClient | undefined> {
  const socketPath = controlPathFor(diskPath);
  const channel = await openChannel(socketPath);
  return channel === undefined ? undefined : new ControlClient(socketPath, channel);
}

/**
 * Like findControl, for when the disk must be served.
 * @throws NOT_FOUND when no server answers for the disk
 */
export async function connectControl(diskPath: string): Promise<ControlClient> {
  const c = await findControl(diskPath);
  if (c === undefined) {
    throw new DeltaDiskError('NOT_FOUND', `${diskPath} is not being served (nothing answers on ${controlPathFor(diskPath)})`, {
      path: controlPathFor(diskPath),
    });
  }
  return c;
}

export class ControlClient {
  /** What the server said about itself: pid, disk, export name, NBD URI, geometry. */
  readonly hello: ControlHello;
  readonly path: string;
  readonly #channel: Channel;
  readonly #waiting = new Map<number, { resolve: (r: ControlReply) => void; reject: (e: Error) => void }>();
  #nextId = 1;
  #failure: DeltaDiskError | undefined;

  /** @internal use findControl / connectControl */
  constructor(socketPath: string, channel: Channel) {
    this.path = socketPath;
    this.hello = channel.hello;
    this.#channel = channel;
    const socket = channel.socket;
    socket.on('data', (chunk: Buffer) => {
      try {
        channel.queue.push(...channel.lines.push(chunk));
      } catch (err) {
        this.#fail(err as DeltaDiskError);
        return;
      }
      this.#dispatch();
    });
    socket.once('close', () => this.#fail(new DeltaDiskError('PROTOCOL_ERROR', `the control channel ${socketPath} closed`)));
    socket.resume();
    this.#dispatch();
  }

  /** The snapshot tree, oldest first, as the server sees it now. */
  async list(): Promise<SnapshotInfo[]> {
    return (await this.#call({ op: 'list' })) as SnapshotInfo[];
  }

  async info(): Promise<DiskInfo> {
    return (await this.#call({ op: 'info' })) as DiskInfo;
  }

  /** Takes a snapshot between two NBD requests; `freezeMs` says how long writes were held. */
  async snapshot(name: string, description = ''): Promise<LiveSnapshot> {
    return (await this.#call({ op: 'snapshot', name, description })) as LiveSnapshot;
  }

  async deleteSnapshot(name: string): Promise<void> {
    await this.#call({ op: 'delete', name });
  }

  /** Disk.changedBlocks, answered by the server: blocks that may differ between two points in time. */
  async changedBlocks(from: string, to?: string): Promise<number[]> {
    const r = (await this.#call({ op: 'changed-blocks', from, to: to ?? null })) as { runs: unknown };
    return fromRuns(r.runs, Math.ceil(this.hello.virtualSize / this.hello.blockSize));
  }

  /**
   * Opens an NBD session on export `name` (a snapshot's name, or the current
   * state's export name) over a new connection to the control socket, so it
   * works whatever address the NBD server listens on. Close it when done.
   * @throws NOT_FOUND when there is no such export
   */
  async openExport(name: string, options: NbdClientOptions = {}): Promise<NbdClient> {
    const channel = await openChannel(this.path);
    if (channel === undefined) throw new DeltaDiskError('NOT_FOUND', `the server of ${this.hello.disk} is gone`, { path: this.path });
    const { socket } = channel;
    try {
      if (channel.queue.length > 0) throw new DeltaDiskError('PROTOCOL_ERROR', 'the control channel sent more than a hello');
      socket.write(encodeLine({ id: 1, op: 'nbd' }));
      const { line, head } = await new Promise<{ line: string; head: Buffer }>((resolve, reject) => {
        const onData = (chunk: Buffer): void => {
          // Only the reply line is control protocol; whatever follows it is the NBD stream.
          const nl = chunk.indexOf(0x0a);
          try {
            if (nl === -1) {
              channel.lines.push(chunk);
              return;
            }
            socket.off('data', onData);
            socket.off('close', onClose);
            socket.pause();
            resolve({ line: channel.lines.push(chunk.subarray(0, nl + 1))[0]!, head: chunk.subarray(nl + 1) });
          } catch (err) {
            reject(err as Error);
          }
        };
        const onClose = (): void => reject(new DeltaDiskError('PROTOCOL_ERROR', 'the control channel closed during the NBD hand-over'));
        socket.on('data', onData);
        socket.once('close', onClose);
        socket.resume();
      });
      const reply = decodeReply(line);
      if (!reply.ok) throw new DeltaDiskError(reply.error.code, reply.error.message);
      return await NbdClient.connect({ socket, head }, name, options);
    } catch (err) {
      socket.destroy();
      throw err;
    }
  }

  /** Closes the control connection (the server and its snapshots are unaffected). */
  async close(): Promise<void> {
    this.#channel.socket.end();
    this.#channel.socket.destroy();
  }

  #call(body: Record<string, unknown>): Promise<unknown> {
    if (this.#failure !== undefined) return Promise.reject(this.#failure);
    const id = this.#nextId++;
    return new Promise<ControlReply>((resolve, reject) => {
      this.#waiting.set(id, { resolve, reject });
      this.#channel.socket.write(encodeLine({ id, ...body }));
    }).then((reply) => {
      if (reply.ok) return reply.result;
      throw new DeltaDiskError(reply.error.code, reply.error.message);
    });
  }

  #dispatch(): void {
    const queue = this.#channel.queue;
    while (queue.length > 0) {
      let reply: ControlReply;
      try {
        reply = decodeReply(queue.shift()!);
      } catch (err) {
        this.#fail(err as DeltaDiskError);
        return;
      }
      const w = this.#waiting.get(reply.id);
      if (w === undefined) {
        this.#fail(new DeltaDiskError('PROTOCOL_ERROR', `the control channel answered unknown request ${reply.id}`));
        return;
      }
      this.#waiting.delete(reply.id);
      w.resolve(reply);
    }
  }

  #fail(err: DeltaDiskError): void {
    this.#failure ??= err;
    for (const w of this.#waiting.values()) w.reject(err);
    this.#waiting.clear();
    this.#channel.socket.destroy();
  }
}
