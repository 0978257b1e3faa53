/**
 * The server side of the NBD transmission phase for one connection: read
 * requests, run them concurrently, answer each with the reply the protocol
 * prescribes.
 *
 * Guarantees:
 *  - Requests run concurrently and replies go out as they finish (the protocol
 *    allows any order). Each reply is written contiguously.
 *  - FLUSH replies only after every write acknowledged before it is durable
 *    (Disk.flush runs behind all writes already queued); a FUA write replies
 *    only after a flush that covers it.
 *  - Bad requests get the error value doc/proto.md names (EINVAL, EPERM, ENOSPC)
 *    and the stream stays in step: a refused WRITE's payload is skipped, not
 *    buffered. Only a request with a wrong magic (the stream is lost) ends the
 *    connection, by throwing PROTOCOL_ERROR.
 *  - Memory is bounded: no new request is read while the requests in flight hold
 *    `maxInFlightBytes` (payloads, read buffers, replies not yet sent) or number
 *    `maxInFlightRequests`; the client then meets TCP backpressure.
 */
import { DeltaDiskError } from '../errors.js';
import { allocationDescriptors } from './allocation.js';
import type { BufferPool } from '../io/buffer-pool.js';
import {
  CMD_FLAG_DF,
  CMD_FLAG_FAST_ZERO,
  CMD_FLAG_FUA,
  CMD_FLAG_NO_HOLE,
  CMD_FLAG_REQ_ONE,
  Cmd,
  Err,
  MAX_PAYLOAD,
  REQUEST_HEADER_LENGTH,
  TFLAG_SEND_DF,
  TFLAG_SEND_FUA,
} from './constants.js';
import { nbdErrnoFor } from './error-map.js';
import type { Negotiated } from './negotiation.js';
import {
  decodeRequest,
  encodeBlockStatusChunk,
  encodeErrorChunk,
  encodeNoneChunk,
  encodeOffsetDataHeader,
  encodeSimpleReply,
  type Request,
} from './transmission-codec.js';

export interface TransmissionIo {
  read(n: number): Promise<Buffer | undefined>;
  skip(n: number): Promise<void>;
  /** Writes the buffers contiguously; `sent` runs once they have left or the connection is gone. */
  send(buffers: readonly Buffer[], sent: () => void): void;
  /** True once no further request should be read (server stopping, connection failed). */
  stopped(): boolean;
}

export interface TransmissionLimits {
  readonly maxInFlightBytes: number;
  readonly maxInFlightRequests: number;
}

export const DEFAULT_LIMITS: TransmissionLimits = { maxInFlightBytes: 64 * 1024 * 1024, maxInFlightRequests: 256 };

/** Bytes a request costs beyond its payload: header, reply, bookkeeping. */
const REQUEST_OVERHEAD = 128;

/** Why the request loop ended. */
export type LoopEnd = 'disconnect' | 'eof' | 'stopped';

class Refusal {
  constructor(
    readonly errno: number,
    readonly message: string,
  ) {}
}

const NAMES: Record<number, string> = {
  [Cmd.READ]: 'READ',
  [Cmd.WRITE]: 'WRITE',
  [Cmd.FLUSH]: 'FLUSH',
  [Cmd.TRIM]: 'TRIM',
  [Cmd.WRITE_ZEROES]: 'WRITE_ZEROES',
  [Cmd.BLOCK_STATUS]: 'BLOCK_STATUS',
};

export class RequestLoop {
  readonly #io: TransmissionIo;
  readonly #n: Negotiated;
  readonly #limits: TransmissionLimits;
  readonly #pool: BufferPool;
  readonly #log: (message: string) => void;
  readonly #running = new Set<Promise<void>>();
  #bytes = 0;
  #count = 0;
  #wake: (() => void) | undefined;

  constructor(io: TransmissionIo, negotiated: Negotiated, limits: TransmissionLimits, pool: BufferPool, log: (message: string) => void) {
    this.#io = io;
    this.#n = negotiated;
    this.#limits = limits;
    this.#pool = pool;
    this.#log = log;
  }

  /** Reads and starts requests until the client disconnects or the stream ends. */
  async run(): Promise<LoopEnd> {
    const io = this.#io;
    for (;;) {
      await this.#admit();
      if (io.stopped()) return 'stopped';
      const header = await io.read(REQUEST_HEADER_LENGTH);
      if (header === undefined) return io.stopped() ? 'stopped' : 'eof';
      const req = decodeRequest(header);
      if (req.type === Cmd.DISC) return 'disconnect';
      const cost = REQUEST_OVERHEAD + (req.type === Cmd.WRITE || req.type === Cmd.READ ? Math.min(req.length, MAX_PAYLOAD) : 0);
      this.#bytes += cost;
      this.#count++;
      let data: Buffer | undefined;
      const refusal = this.#check(req);
      if (req.type === Cmd.WRITE) {
        if (refusal !== undefined || req.length > MAX_PAYLOAD) await io.skip(req.length);
        else if (req.length > 0) {
          data = await io.read(req.length);
          if (data === undefined) throw new DeltaDiskError('PROTOCOL_ERROR', 'the client closed the connection inside a WRITE payload');
        } else data = Buffer.alloc(0);
      }
      const job = this.#serve(req, refusal, data, cost);
      this.#running.add(job);
      void job.finally(() => this.#running.delete(job));
    }
  }

  /** Resolves when every request started has been answered (or its connection is gone). */
  async idle(): Promise<void> {
    while (this.#running.size > 0) await Promise.all([...this.#running]);
  }

  async #admit(): Promise<void> {
    while (this.#bytes >= this.#limits.maxInFlightBytes || this.#count >= this.#limits.maxInFlightRequests) {
      await new Promise<void>((resolve) => (this.#wake = resolve));
    }
  }

  #release(cost: number): void {
    this.#bytes -= cost;
    this.#count--;
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }

  /** The protocol's answer to a request that must not run, or undefined when it may. */
  #check(req: Request): Refusal | undefined {
    const e = this.#n.export;
    const tflags = this.#n.transmissionFlags;
    let allowed = (tflags & TFLAG_SEND_FUA) !== 0 ? CMD_FLAG_FUA : 0;
    const end = req.offset + BigInt(req.length);
    const beyond = end > BigInt(e.size);
    switch (req.type) {
      case Cmd.READ:
        if ((tflags & TFLAG_SEND_DF) !== 0) allowed |= CMD_FLAG_DF;
        if (req.length > MAX_PAYLOAD) return new Refusal(Err.EINVAL, `a read of ${req.length} bytes is more than the ${MAX_PAYLOAD} allowed`);
        if (beyond) return new Refusal(Err.EINVAL, `a read ending at ${end} is past the end of the export (${e.size} bytes)`);
        break;
      case Cmd.WRITE:
      case Cmd.WRITE_ZEROES:
        if (req.type === Cmd.WRITE_ZEROES) allowed |= CMD_FLAG_NO_HOLE | CMD_FLAG_FAST_ZERO;
        if (e.readOnly) return new Refusal(Err.EPERM, `export ${JSON.stringify(e.name)} is read-only`);
        if (req.type === Cmd.WRITE && req.length > MAX_PAYLOAD) return new Refusal(Err.EINVAL, `a write of ${req.length} bytes is more than the ${MAX_PAYLOAD} allowed`);
        if (beyond) return new Refusal(Err.ENOSPC, `a write ending at ${end} is past the end of the export (${e.size} bytes)`);
        break;
      case Cmd.TRIM:
        if (e.readOnly) return new Refusal(Err.EPERM, `export ${JSON.stringify(e.name)} is read-only`);
        if (beyond) return new Refusal(Err.EINVAL, `a trim ending at ${end} is past the end of the export (${e.size} bytes)`);
        break;
      case Cmd.FLUSH:
        if (req.offset !== 0n || req.length !== 0) return new Refusal(Err.EINVAL, 'FLUSH must have offset and length 0');
        break;
      case Cmd.BLOCK_STATUS:
        allowed |= CMD_FLAG_REQ_ONE;
        if (this.#n.allocationContext === undefined) return new Refusal(Err.EINVAL, 'BLOCK_STATUS needs a metadata context selected for this export');
        if (req.length === 0) return new Refusal(Err.EINVAL, 'BLOCK_STATUS of 0 bytes');
        if (beyond) return new Refusal(Err.EINVAL, `a status query ending at ${end} is past the end of the export (${e.size} bytes)`);
        break;
      default:
        return new Refusal(Err.EINVAL, `unknown command ${req.type}`);
    }
    if ((req.flags & ~allowed) !== 0) return new Refusal(Err.EINVAL, `command flags 0x${req.flags.toString(16)} are not valid for ${NAMES[req.type]}`);
    return undefined;
  }

  async #serve(req: Request, refusal: Refusal | undefined, data: Buffer | undefined, cost: number): Promise<void> {
    const done = (): void => this.#release(cost);
    if (refusal !== undefined) return this.#error(req, refusal.errno, refusal.message, done);
    const e = this.#n.export;
    const offset = Number(req.offset);
    const fua = (req.flags & CMD_FLAG_FUA) !== 0;
    try {
      switch (req.type) {
        case Cmd.READ: {
          if (req.length === 0) return this.#readReply(req, offset, Buffer.alloc(0), done);
          const buf = this.#pool.acquire(req.length);
          try {
            await e.readInto(buf, offset);
          } catch (err) {
            this.#pool.release(buf);
            throw err;
          }
          // The buffer goes back to the pool once the socket has taken the reply.
          return this.#readReply(req, offset, buf, () => {
            this.#pool.release(buf);
            done();
          });
        }
        case Cmd.WRITE:
          await e.write(offset, data!, fua);
          break;
        case Cmd.WRITE_ZEROES:
          if (req.length > 0) await e.writeZeroes(offset, req.length, fua);
          break;
        case Cmd.TRIM:
          if (req.length > 0) await e.trim(offset, req.length, fua);
          break;
        case Cmd.FLUSH:
          await e.flush();
          break;
        case Cmd.BLOCK_STATUS: {
          const extents = allocationDescriptors({
            offset,
            length: req.length,
            blockSize: e.blockSize,
            flagsOf: (block) => e.statusFlags(block),
            reqOne: (req.flags & CMD_FLAG_REQ_ONE) !== 0,
          });
          return this.#io.send([encodeBlockStatusChunk(req.handle, this.#n.allocationContext!, extents, true)], done);
        }
      }
      this.#io.send([encodeSimpleReply(0, req.handle)], done);
    } catch (err) {
      if (!(err instanceof DeltaDiskError)) this.#log(`unexpected failure of ${NAMES[req.type]} at ${offset}: ${(err as Error)?.stack ?? String(err)}`);
      else if (err.code !== 'READ_ONLY') this.#log(`${NAMES[req.type]} at ${offset}+${req.length} failed: ${err.message} [${err.code}]`);
      this.#error(req, nbdErrnoFor(err), err instanceof Error ? err.message : String(err), done);
    }
  }

  #readReply(req: Request, offset: number, data: Buffer, done: () => void): void {
    if (!this.#n.structured) return this.#io.send([encodeSimpleReply(0, req.handle), data], done);
    if (data.length === 0) return this.#io.send([encodeNoneChunk(req.handle)], done);
    // The data is all in hand, so no error can follow: the data chunk may be the final one.
    this.#io.send([encodeOffsetDataHeader(req.handle, offset, data.length, true), data], done);
  }

  #error(req: Request, errno: number, message: string, done: () => void): void {
    // With structured replies errors carry a message; a READ must never get a simple reply.
    if (this.#n.structured) this.#io.send([encodeErrorChunk(req.handle, errno, message)], done);
    else this.#io.send([encodeSimpleReply(errno, req.handle)], done);
  }
}
