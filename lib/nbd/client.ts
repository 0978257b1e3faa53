/**
 * A small, strict NBD client: fixed-newstyle handshake with NBD_OPT_GO,
 * structured replies and base:allocation when the server offers them, and any
 * number of requests in flight on one connection.
 *
 * It is how a VM backup reads a snapshot from a disk that another process is
 * serving (through the control channel), and a second witness in the tests next
 * to qemu and libnbd. Anything the server sends that doc/proto.md does not allow
 * (unknown handles, chunks outside the request, a read reply short of data) ends
 * the connection with PROTOCOL_ERROR and fails every pending request; an error
 * the server reports for one request fails only that request, with the matching
 * DeltaDiskError code.
 */
import net from 'node:net';
import type { Duplex } from 'node:stream';
import { DeltaDiskError } from '../errors.js';
import { clientHandshake, type Agreement, type NbdClientOptions } from './client-handshake.js';
import {
  CMD_FLAG_FUA,
  CMD_FLAG_REQ_ONE,
  Cmd,
  MAX_PAYLOAD,
  REPLY_FLAG_DONE,
  ReplyType,
  SIMPLE_REPLY_MAGIC,
  STRUCTURED_REPLY_MAGIC,
  TFLAG_READ_ONLY,
} from './constants.js';
import { errorFromNbd } from './error-map.js';
import type { BlockSizes } from './handshake-codec.js';
import { SocketReader } from './socket-reader.js';
import {
  decodeBlockStatus,
  decodeChunkHeader,
  decodeDataOffset,
  decodeErrorPayload,
  decodeOffsetHole,
  decodeSimpleReply,
  encodeRequest,
  type StatusDescriptor,
} from './transmission-codec.js';

export type { NbdClientOptions } from './client-handshake.js';

export type NbdTarget =
  | { readonly host: string; readonly port: number }
  | { readonly path: string }
  /** A connected socket; `head` holds bytes of the NBD stream already read from it. */
  | { readonly socket: Duplex; readonly head?: Buffer };

interface Pending {
  readonly what: string;
  readonly offset: number;
  readonly length: number;
  readonly data: Buffer | undefined;
  received: number;
  error: DeltaDiskError | undefined;
  extents: StatusDescriptor[] | undefined;
  readonly resolve: (value: Buffer | StatusDescriptor[] | undefined) => void;
  readonly reject: (err: Error) => void;
}

function lost(message: string): DeltaDiskError {
  return new DeltaDiskError('PROTOCOL_ERROR', message);
}

async function open(target: NbdTarget): Promise<Duplex> {
  if ('socket' in target) return target.socket;
  return new Promise((resolve, reject) => {
    const s = 'path' in target ? net.createConnection({ path: target.path }) : net.createConnection({ host: target.host, port: target.port });
    s.once('connect', () => {
      s.removeAllListeners('error');
      resolve(s);
    });
    s.once('error', (err) => reject(new DeltaDiskError('IO_ERROR', `cannot connect to the NBD server: ${err.message}`, { cause: err })));
  });
}

export class NbdClient {
  readonly exportName: string;
  readonly size: number;
  readonly transmissionFlags: number;
  readonly blockSizes: BlockSizes | undefined;
  readonly structured: boolean;
  readonly #socket: Duplex;
  readonly #reader: SocketReader;
  readonly #context: number | undefined;
  readonly #pending = new Map<bigint, Pending>();
  #nextHandle = 1n;
  #failure: DeltaDiskError | undefined;
  #closed = false;
  /** Resolves close() once the last pending request is settled. */
  #idle: (() => void) | undefined;

  private constructor(socket: Duplex, reader: SocketReader, name: string, a: Agreement) {
    this.#socket = socket;
    this.#reader = reader;
    this.exportName = name;
    this.size = a.size;
    this.transmissionFlags = a.transmissionFlags;
    this.blockSizes = a.blockSizes;
    this.structured = a.structured;
    this.#context = a.allocationContext;
    void this.#replies();
  }

  /**
   * Connects and enters the transmission phase on export `name`.
   * @throws NOT_FOUND (no such export), PROTOCOL_ERROR, IO_ERROR
   */
  static async connect(target: NbdTarget, name: string, options: NbdClientOptions = {}): Promise<NbdClient> {
    const socket = await open(target);
    socket.on('error', () => undefined);
    const reader = new SocketReader(socket, undefined, 'socket' in target ? target.head : undefined);
    try {
      const a = await clientHandshake(socket, reader, name, options);
      return new NbdClient(socket, reader, name, a);
    } catch (err) {
      socket.destroy();
      throw err;
    }
  }

  get readOnly(): boolean {
    return (this.transmissionFlags & TFLAG_READ_ONLY) !== 0;
  }

  /** True when block status (base:allocation) was negotiated. */
  get hasAllocation(): boolean {
    return this.#context !== undefined;
  }

  async read(offset: number, length: number): Promise<Buffer> {
    this.#range(offset, length, true);
    return (await this.#request(Cmd.READ, 0, offset, length, undefined, `read at ${offset}`)) as Buffer;
  }

  async write(offset: number, data: Uint8Array, options: { fua?: boolean } = {}): Promise<void> {
    this.#range(offset, data.length, true);
    await this.#request(Cmd.WRITE, options.fua ? CMD_FLAG_FUA : 0, offset, data.length, data, `write at ${offset}`);
  }

  async writeZeroes(offset: number, length: number, options: { fua?: boolean } = {}): Promise<void> {
    this.#range(offset, length, false);
    await this.#request(Cmd.WRITE_ZEROES, options.fua ? CMD_FLAG_FUA : 0, offset, length, undefined, `write zeroes at ${offset}`);
  }

  async trim(offset: number, length: number): Promise<void> {
    this.#range(offset, length, false);
    await this.#request(Cmd.TRIM, 0, offset, length, undefined, `trim at ${offset}`);
  }

  async flush(): Promise<void> {
    await this.#request(Cmd.FLUSH, 0, 0, 0, undefined, 'flush');
  }

  /** base:allocation descriptors from `offset` (they may cover less or, at the end, more than asked). */
  async blockStatus(offset: number, length: number, options: { reqOne?: boolean } = {}): Promise<StatusDescriptor[]> {
    if (this.#context === undefined) throw new DeltaDiskError('UNSUPPORTED', 'the server did not agree to base:allocation');
    this.#range(offset, length, false);
    return (await this.#request(Cmd.BLOCK_STATUS, options.reqOne ? CMD_FLAG_REQ_ONE : 0, offset, length, undefined, `block status at ${offset}`)) as StatusDescriptor[];
  }

  /** Waits for requests in flight, sends NBD_CMD_DISC and closes. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#pending.size > 0) await new Promise<void>((resolve) => (this.#idle = resolve));
    if (this.#failure === undefined && !this.#socket.destroyed) {
      this.#socket.write(encodeRequest({ flags: 0, type: Cmd.DISC, handle: 0n, offset: 0n, length: 0 }));
      await new Promise<void>((resolve) => {
        this.#socket.end(() => resolve());
        setTimeout(resolve, 1000).unref();
      });
    }
    this.#socket.destroy();
  }

  #range(offset: number, length: number, payload: boolean): void {
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || length > 0xffffffff) {
      throw new DeltaDiskError('INVALID_ARGUMENT', `offset ${offset} and length ${length} are not a valid request`);
    }
    if (payload && length > MAX_PAYLOAD) throw new DeltaDiskError('LIMIT_EXCEEDED', `a request may carry at most ${MAX_PAYLOAD} bytes`);
    if (offset + length > this.size) throw new DeltaDiskError('OUT_OF_RANGE', `range ${offset}+${length} ends past the export's ${this.size} bytes`, { offset });
  }

  #request(type: number, flags: number, offset: number, length: number, data: Uint8Array | undefined, what: string): Promise<Buffer | StatusDescriptor[] | undefined> {
    if (this.#failure !== undefined) return Promise.reject(this.#failure);
    if (this.#closed) return Promise.reject(new DeltaDiskError('NOT_OPEN', 'the NBD connection is closed'));
    const handle = this.#nextHandle++;
    return new Promise((resolve, reject) => {
      this.#pending.set(handle, {
        what,
        offset,
        length,
        data: type === Cmd.READ ? Buffer.alloc(length) : undefined,
        received: 0,
        error: undefined,
        extents: type === Cmd.BLOCK_STATUS ? [] : undefined,
        resolve,
        reject,
      });
      const header = encodeRequest({ flags, type, handle, offset: BigInt(offset), length });
      if (data === undefined || data.length === 0) this.#socket.write(header);
      else {
        this.#socket.cork?.();
        this.#socket.write(header);
        this.#socket.write(data);
        this.#socket.uncork?.();
      }
    });
  }

  async #replies(): Promise<void> {
    try {
      for (;;) {
        const magicBytes = await this.#reader.read(4);
        if (magicBytes === undefined) {
          if (this.#pending.size > 0 || !this.#closed) throw lost('the server closed the connection');
          return;
        }
        const magic = magicBytes.readUInt32BE(0);
        if (magic === SIMPLE_REPLY_MAGIC) await this.#simple(magicBytes);
        else if (magic === STRUCTURED_REPLY_MAGIC) await this.#chunk(magicBytes);
        else throw lost(`a reply with unknown magic 0x${magic.toString(16)}`);
      }
    } catch (err) {
      const e = err instanceof DeltaDiskError ? err : lost(String(err));
      if (this.#closed && this.#pending.size === 0) return;
      this.#fail(e);
    }
  }

  async #more(n: number): Promise<Buffer> {
    const b = await this.#reader.read(n);
    if (b === undefined) throw lost('the server closed the connection inside a reply');
    return b;
  }

  #take(handle: bigint): Pending {
    const p = this.#pending.get(handle);
    if (p === undefined) throw lost(`a reply to unknown handle ${handle}`);
    return p;
  }

  async #simple(magic: Buffer): Promise<void> {
    const r = decodeSimpleReply(Buffer.concat([magic, await this.#more(12)]));
    const p = this.#take(r.handle);
    if (this.structured && p.data !== undefined) throw lost('a simple reply to a read after structured replies were agreed');
    if (r.error === 0 && p.data !== undefined && p.length > 0) (await this.#more(p.length)).copy(p.data);
    this.#settled(r.handle);
    if (r.error !== 0) p.reject(errorFromNbd(r.error, '', p.what, p.offset));
    else p.resolve(p.data ?? p.extents);
  }

  async #chunk(magic: Buffer): Promise<void> {
    if (!this.structured) throw lost('a structured reply that was never agreed');
    const h = decodeChunkHeader(Buffer.concat([magic, await this.#more(16)]));
    const p = this.#take(h.handle);
    if (h.length > MAX_PAYLOAD + 8 + 4096) throw lost(`a reply chunk of ${h.length} bytes`);
    const payload = await this.#more(h.length);
    switch (h.type) {
      case ReplyType.NONE:
        if (h.length !== 0 || (h.flags & REPLY_FLAG_DONE) === 0) throw lost('a NONE chunk must be empty and final');
        break;
      case ReplyType.OFFSET_DATA:
      case ReplyType.OFFSET_HOLE: {
        if (p.data === undefined) throw lost('a content chunk in reply to something other than a read');
        const hole = h.type === ReplyType.OFFSET_HOLE;
        const at = hole ? decodeOffsetHole(payload).offset : decodeDataOffset(payload);
        const n = hole ? decodeOffsetHole(payload).size : payload.length - 8;
        if (at < p.offset || at + n > p.offset + p.length) throw lost('a content chunk outside the requested range');
        if (hole) p.data.fill(0, at - p.offset, at - p.offset + n);
        else payload.copy(p.data, at - p.offset, 8);
        p.received += n;
        if (p.received > p.length) throw lost('content chunks overlap');
        break;
      }
      case ReplyType.BLOCK_STATUS: {
        if (p.extents === undefined) throw lost('a block status chunk in reply to something other than a status query');
        const s = decodeBlockStatus(payload);
        if (s.contextId === this.#context) p.extents.push(...s.extents);
        break;
      }
      default:
        if ((h.type & 0x8000) === 0) throw lost(`a reply chunk of unknown type ${h.type}`);
        {
          const e = decodeErrorPayload(h.type, payload);
          p.error ??= errorFromNbd(e.error, e.message, p.what, e.offset ?? p.offset);
        }
    }
    if ((h.flags & REPLY_FLAG_DONE) === 0) return;
    if (p.error === undefined) {
      if (p.data !== undefined && p.received !== p.length) throw lost(`a read reply covered ${p.received} of ${p.length} bytes`);
      if (p.extents !== undefined && p.extents.length === 0) throw lost('a block status reply without descriptors');
    }
    this.#settled(h.handle);
    if (p.error !== undefined) p.reject(p.error);
    else p.resolve(p.data ?? p.extents);
  }

  #settled(handle: bigint): void {
    this.#pending.delete(handle);
    if (this.#pending.size === 0) this.#idle?.();
  }

  #fail(err: DeltaDiskError): void {
    this.#failure ??= err;
    for (const p of this.#pending.values()) p.reject(err);
    this.#pending.clear();
    this.#idle?.();
    this.#socket.destroy();
  }
}
