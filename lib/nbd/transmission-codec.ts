/**
 * Encode and decode the messages of the NBD transmission phase, for both sides:
 * requests, simple replies and structured reply chunks. Pure: no I/O.
 *
 * Offsets are unsigned 64-bit on the wire; they are decoded as bigint so a hostile
 * 2^64 - 1 is compared exactly, never rounded into a plausible number. Handles are
 * opaque 64-bit values echoed back as they came.
 */
import { DeltaDiskError } from '../errors.js';
import {
  REPLY_FLAG_DONE,
  REQUEST_HEADER_LENGTH,
  REQUEST_MAGIC,
  ReplyType,
  SIMPLE_REPLY_LENGTH,
  SIMPLE_REPLY_MAGIC,
  STRUCTURED_HEADER_LENGTH,
  STRUCTURED_REPLY_MAGIC,
} from './constants.js';
import { decodeString, encodeMessage } from './wire-strings.js';

function bad(message: string): never {
  throw new DeltaDiskError('PROTOCOL_ERROR', message);
}

function view(buf: Uint8Array): Buffer {
  return Buffer.isBuffer(buf) ? buf : Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
}

// ---------------------------------------------------------------- requests

export interface Request {
  readonly flags: number;
  readonly type: number;
  readonly handle: bigint;
  readonly offset: bigint;
  readonly length: number;
}

export function encodeRequest(r: Request): Buffer {
  const b = Buffer.allocUnsafe(REQUEST_HEADER_LENGTH);
  b.writeUInt32BE(REQUEST_MAGIC, 0);
  b.writeUInt16BE(r.flags, 4);
  b.writeUInt16BE(r.type, 6);
  b.writeBigUInt64BE(r.handle, 8);
  b.writeBigUInt64BE(r.offset, 16);
  b.writeUInt32BE(r.length, 24);
  return b;
}

/** Decodes a 28-byte request header; a wrong magic means the stream is lost. */
export function decodeRequest(buf: Uint8Array): Request {
  if (buf.length !== REQUEST_HEADER_LENGTH) bad(`a request header must be ${REQUEST_HEADER_LENGTH} bytes`);
  const b = view(buf);
  const magic = b.readUInt32BE(0);
  if (magic !== REQUEST_MAGIC) bad(`bad request magic 0x${magic.toString(16)}`);
  return {
    flags: b.readUInt16BE(4),
    type: b.readUInt16BE(6),
    handle: b.readBigUInt64BE(8),
    offset: b.readBigUInt64BE(16),
    length: b.readUInt32BE(24),
  };
}

// ---------------------------------------------------------------- simple replies

export function encodeSimpleReply(error: number, handle: bigint): Buffer {
  const b = Buffer.allocUnsafe(SIMPLE_REPLY_LENGTH);
  b.writeUInt32BE(SIMPLE_REPLY_MAGIC, 0);
  b.writeUInt32BE(error, 4);
  b.writeBigUInt64BE(handle, 8);
  return b;
}

// ---------------------------------------------------------------- structured replies

export interface ChunkHeader {
  readonly flags: number;
  readonly type: number;
  readonly handle: bigint;
  readonly length: number;
}

function chunkHeader(b: Buffer, flags: number, type: number, handle: bigint, length: number): void {
  b.writeUInt32BE(STRUCTURED_REPLY_MAGIC, 0);
  b.writeUInt16BE(flags, 4);
  b.writeUInt16BE(type, 6);
  b.writeBigUInt64BE(handle, 8);
  b.writeUInt32BE(length, 16);
}

export function encodeNoneChunk(handle: bigint): Buffer {
  const b = Buffer.allocUnsafe(STRUCTURED_HEADER_LENGTH);
  chunkHeader(b, REPLY_FLAG_DONE, ReplyType.NONE, handle, 0);
  return b;
}

/** Header (28 bytes) of an OFFSET_DATA chunk; the `dataLength` bytes of data follow it. */
export function encodeOffsetDataHeader(handle: bigint, offset: number, dataLength: number, done: boolean): Buffer {
  if (dataLength < 1 || dataLength > 0xffffffff - 8) throw new DeltaDiskError('INVALID_ARGUMENT', `a data chunk of ${dataLength} bytes cannot be sent`);
  const b = Buffer.allocUnsafe(STRUCTURED_HEADER_LENGTH + 8);
  chunkHeader(b, done ? REPLY_FLAG_DONE : 0, ReplyType.OFFSET_DATA, handle, 8 + dataLength);
  b.writeBigUInt64BE(BigInt(offset), 20);
  return b;
}

export function encodeHoleChunk(handle: bigint, offset: number, size: number, done: boolean): Buffer {
  if (size < 1 || size > 0xffffffff) throw new DeltaDiskError('INVALID_ARGUMENT', `a hole of ${size} bytes cannot be sent`);
  const b = Buffer.allocUnsafe(STRUCTURED_HEADER_LENGTH + 12);
  chunkHeader(b, done ? REPLY_FLAG_DONE : 0, ReplyType.OFFSET_HOLE, handle, 12);
  b.writeBigUInt64BE(BigInt(offset), 20);
  b.writeUInt32BE(size, 28);
  return b;
}

/** One block status descriptor: a run of `length` bytes with status `flags`. */
export interface StatusDescriptor {
  readonly length: number;
  readonly flags: number;
}

export function encodeBlockStatusChunk(handle: bigint, contextId: number, extents: readonly StatusDescriptor[], done: boolean): Buffer {
  if (extents.length === 0) throw new DeltaDiskError('INVALID_ARGUMENT', 'a block status chunk needs at least one descriptor');
  const length = 4 + 8 * extents.length;
  const b = Buffer.allocUnsafe(STRUCTURED_HEADER_LENGTH + length);
  chunkHeader(b, done ? REPLY_FLAG_DONE : 0, ReplyType.BLOCK_STATUS, handle, length);
  b.writeUInt32BE(contextId >>> 0, 20);
  extents.forEach((e, i) => {
    if (e.length < 1 || e.length > 0xffffffff) throw new DeltaDiskError('INVALID_ARGUMENT', `a status descriptor of ${e.length} bytes cannot be sent`);
    b.writeUInt32BE(e.length, 24 + 8 * i);
    b.writeUInt32BE(e.flags >>> 0, 28 + 8 * i);
  });
  return b;
}

/** An ERROR chunk (always final here): an errno and a message for a human. */
export function encodeErrorChunk(handle: bigint, error: number, message: string): Buffer {
  if (error === 0) throw new DeltaDiskError('INVALID_ARGUMENT', 'an error chunk needs a nonzero error');
  const text = encodeMessage(message);
  const b = Buffer.allocUnsafe(STRUCTURED_HEADER_LENGTH + 6 + text.length);
  chunkHeader(b, REPLY_FLAG_DONE, ReplyType.ERROR, handle, 6 + text.length);
  b.writeUInt32BE(error, 20);
  b.writeUInt16BE(text.length, 24);
  b.set(text, 26);
  return b;
}

// ---------------------------------------------------------------- decoding replies (client side)

/** The magic of the next reply, to tell simple from structured. */
export function replyMagic(buf: Uint8Array): number {
  if (buf.length < 4) bad('a reply is shorter than its magic');
  return view(buf).readUInt32BE(0);
}

export function decodeSimpleReply(buf: Uint8Array): { error: number; handle: bigint } {
  if (buf.length !== SIMPLE_REPLY_LENGTH) bad(`a simple reply must be ${SIMPLE_REPLY_LENGTH} bytes`);
  const b = view(buf);
  if (b.readUInt32BE(0) !== SIMPLE_REPLY_MAGIC) bad('a simple reply has the wrong magic');
  return { error: b.readUInt32BE(4), handle: b.readBigUInt64BE(8) };
}

export function decodeChunkHeader(buf: Uint8Array): ChunkHeader {
  if (buf.length !== STRUCTURED_HEADER_LENGTH) bad(`a structured reply header must be ${STRUCTURED_HEADER_LENGTH} bytes`);
  const b = view(buf);
  if (b.readUInt32BE(0) !== STRUCTURED_REPLY_MAGIC) bad('a structured reply has the wrong magic');
  return { flags: b.readUInt16BE(4), type: b.readUInt16BE(6), handle: b.readBigUInt64BE(8), length: b.readUInt32BE(16) };
}

export function decodeOffsetHole(payload: Uint8Array): { offset: number; size: number } {
  if (payload.length !== 12) bad('an OFFSET_HOLE chunk must carry 12 bytes');
  const b = view(payload);
  const size = b.readUInt32BE(8);
  if (size === 0) bad('an OFFSET_HOLE chunk describes an empty hole');
  return { offset: safeOffset(b.readBigUInt64BE(0)), size };
}

export function decodeDataOffset(payload: Uint8Array): number {
  if (payload.length < 9) bad('an OFFSET_DATA chunk must carry at least 9 bytes');
  return safeOffset(view(payload).readBigUInt64BE(0));
}

export function decodeBlockStatus(payload: Uint8Array): { contextId: number; extents: StatusDescriptor[] } {
  const b = view(payload);
  if (b.length < 12 || (b.length - 4) % 8 !== 0) bad(`a BLOCK_STATUS chunk of ${b.length} bytes is not 4 + a multiple of 8`);
  const extents: StatusDescriptor[] = [];
  for (let at = 4; at < b.length; at += 8) {
    const length = b.readUInt32BE(at);
    if (length === 0) bad('a block status descriptor has length 0');
    extents.push({ length, flags: b.readUInt32BE(at + 4) });
  }
  return { contextId: b.readUInt32BE(0), extents };
}

/** Decodes an error chunk's payload (ERROR or ERROR_OFFSET). */
export function decodeErrorPayload(type: number, payload: Uint8Array): { error: number; message: string; offset: number | undefined } {
  const b = view(payload);
  if (b.length < 6) bad('an error chunk must carry at least 6 bytes');
  const error = b.readUInt32BE(0);
  const n = b.readUInt16BE(4);
  if (n > b.length - 6) bad('an error message reaches past the end of its chunk');
  const message = decodeString(b.subarray(6, 6 + n), 'an error message');
  let offset: number | undefined;
  if (type === ReplyType.ERROR_OFFSET) {
    if (b.length !== 6 + n + 8) bad('an ERROR_OFFSET chunk must end with an 8-byte offset');
    offset = safeOffset(b.readBigUInt64BE(6 + n));
  }
  return { error, message, offset };
}

function safeOffset(v: bigint): number {
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) bad(`offset ${v} is beyond what we can address`);
  return Number(v);
}
