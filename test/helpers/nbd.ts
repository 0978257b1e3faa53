/**
 * Test helpers for the NBD server: a disk served in-process on 127.0.0.1, and a
 * raw socket that sends exact bytes and reads exact lengths with a deadline, for
 * speaking the protocol badly on purpose.
 */
import net from 'node:net';
import path from 'node:path';
import { Disk, serveDisk, type ServeDiskOptions, type ServedDisk } from '../../lib/index.js';
import { FLAG_C_FIXED_NEWSTYLE, Opt } from '../../lib/nbd/constants.js';
import { encodeClientFlags, encodeInfoRequest, encodeOption, decodeOptionReplyHeader } from '../../lib/nbd/handshake-codec.js';
import { tempDir } from './temp-dir.js';

export interface Served {
  readonly dir: string;
  readonly disk: Disk;
  readonly served: ServedDisk;
  readonly port: number;
  readonly logs: string[];
  close(): Promise<void>;
}

export async function serveTempDisk(
  options: { size?: number; blockSize?: number; serve?: Partial<ServeDiskOptions>; prepare?: (disk: Disk) => Promise<void> } = {},
): Promise<Served> {
  const { dir, cleanup } = tempDir('deltadisk-nbd-');
  const disk = await Disk.create(path.join(dir, 'disk.chain'), { size: options.size ?? 8 * 1024 * 1024, blockSize: options.blockSize ?? 4096 });
  await options.prepare?.(disk);
  const logs: string[] = [];
  const served = await serveDisk(disk, { listen: { host: '127.0.0.1', port: 0 }, log: (m) => logs.push(m), ...options.serve });
  const port = served.server.address.kind === 'tcp' ? served.server.address.port : 0;
  return {
    dir,
    disk,
    served,
    port,
    logs,
    async close() {
      await served.close();
      await disk.close();
      cleanup();
    },
  };
}

/** A socket for speaking raw bytes. */
export class RawClient {
  readonly socket: net.Socket;
  #buf = Buffer.alloc(0);
  #closed = false;
  #waiters: (() => void)[] = [];

  private constructor(socket: net.Socket) {
    this.socket = socket;
    socket.on('data', (d: Buffer) => {
      this.#buf = Buffer.concat([this.#buf, d]);
      this.#wake();
    });
    // The server closing its side is what the tests watch for, whatever ours does.
    const closed = (): void => {
      this.#closed = true;
      this.#wake();
    };
    socket.on('end', closed);
    socket.on('close', closed);
    socket.on('error', () => undefined);
  }

  static connect(port: number): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const s = net.createConnection({ host: '127.0.0.1', port, allowHalfOpen: true });
      s.once('connect', () => resolve(new RawClient(s)));
      s.once('error', reject);
    });
  }

  /** Connects, reads the greeting, sends fixed-newstyle client flags. */
  static async handshake(port: number, flags = FLAG_C_FIXED_NEWSTYLE): Promise<RawClient> {
    const c = await RawClient.connect(port);
    await c.read(18);
    c.send(encodeClientFlags(flags));
    return c;
  }

  get closed(): boolean {
    return this.#closed;
  }

  send(...parts: Buffer[]): void {
    for (const p of parts) this.socket.write(p);
  }

  /** Exactly n bytes, or throws on close or after `ms`. */
  async read(n: number, ms = 5000): Promise<Buffer> {
    const deadline = Date.now() + ms;
    while (this.#buf.length < n) {
      if (this.#closed) throw new Error(`connection closed with ${this.#buf.length} of ${n} bytes`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for ${n} bytes (have ${this.#buf.length})`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.#waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
    const out = this.#buf.subarray(0, n);
    this.#buf = this.#buf.subarray(n);
    return out;
  }

  /** Resolves true when the server closes the connection within `ms`. */
  async closedWithin(ms = 5000): Promise<boolean> {
    const deadline = Date.now() + ms;
    while (!this.#closed && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    return this.#closed;
  }

  /** Sends an option, returns its replies up to the final one. */
  async option(option: number, data?: Buffer): Promise<{ type: number; data: Buffer }[]> {
    this.send(encodeOption(option, data));
    return this.replies(option);
  }

  async replies(option: number): Promise<{ type: number; data: Buffer }[]> {
    const out: { type: number; data: Buffer }[] = [];
    for (;;) {
      const h = decodeOptionReplyHeader(await this.read(20));
      if (h.option !== option) throw new Error(`reply to option ${h.option}, expected ${option}`);
      const data = await this.read(h.length);
      out.push({ type: h.type, data });
      if (h.type === 1 || h.type >= 0x80000000) return out;
    }
  }

  /** Negotiates (optionally structured replies and base:allocation) and GO on `name`. */
  async go(name: string, opts: { structured?: boolean } = {}): Promise<void> {
    if (opts.structured) await this.option(Opt.STRUCTURED_REPLY);
    const r = await this.option(Opt.GO, encodeInfoRequest({ name, requests: [] }));
    if (r[r.length - 1]!.type !== 1) throw new Error(`GO refused: 0x${r[r.length - 1]!.type.toString(16)}`);
  }

  destroy(): void {
    this.socket.destroy();
  }

  #wake(): void {
    const w = this.#waiters;
    this.#waiters = [];
    for (const f of w) f();
  }
}

/** A buffer of `n` bytes where byte i is a function of (seed, i): distinct per write. */
export function pattern(n: number, seed: number): Buffer {
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) b[i] = (seed * 131 + i * 7 + (i >> 9)) & 0xff;
  return b;
}
