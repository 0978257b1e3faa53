/**
 * Encode and decode the messages of the NBD fixed-newstyle handshake (option
 * haggling), for both sides. Pure: bytes in, values out, no I/O.
 *
 * Decoders take exactly the bytes of one message (the caller has framed them with
 * the lengths in the headers) and throw PROTOCOL_ERROR for anything the
 * specification does not allow: trailing bytes, lengths pointing past the end,
 * strings that are not UTF-8, too many queries. The server turns those into
 * NBD_REP_ERR_INVALID replies; the client into a failed connection.
 */
import { DeltaDiskError } from '../errors.js';
import {
  IHAVEOPT,
  Info,
  MAX_QUERIES,
  MAX_STRING_BYTES,
  NBD_MAGIC,
  OPTION_HEADER_LENGTH,
  OPTION_REPLY_HEADER_LENGTH,
  OPTION_REPLY_MAGIC,
} from './constants.js';
import { decodeString, encodeMessage, encodeString } from './wire-strings.js';

function bad(message: string): never {
  throw new DeltaDiskError('PROTOCOL_ERROR', message);
}

function need(buf: Uint8Array, length: number, what: string): void {
  if (buf.length !== length) bad(`${what} must be ${length} bytes, got ${buf.length}`);
}

function view(buf: Uint8Array): Buffer {
  return Buffer.isBuffer(buf) ? buf : Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
}

// ---------------------------------------------------------------- greeting

export const GREETING_LENGTH = 18;

/** The server's first 18 bytes: NBDMAGIC, IHAVEOPT, handshake flags. */
export function encodeGreeting(handshakeFlags: number): Buffer {
  const b = Buffer.alloc(GREETING_LENGTH);
  b.writeBigUInt64BE(NBD_MAGIC, 0);
  b.writeBigUInt64BE(IHAVEOPT, 8);
  b.writeUInt16BE(handshakeFlags, 16);
  return b;
}

/** @returns the handshake flags; throws unless both magics are right (a newstyle server). */
export function decodeGreeting(buf: Uint8Array): number {
  need(buf, GREETING_LENGTH, 'the greeting');
  const b = view(buf);
  if (b.readBigUInt64BE(0) !== NBD_MAGIC) bad('the server did not send NBDMAGIC');
  if (b.readBigUInt64BE(8) !== IHAVEOPT) bad('the server does not speak the newstyle handshake');
  return b.readUInt16BE(16);
}

export function encodeClientFlags(flags: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(flags >>> 0, 0);
  return b;
}

export function decodeClientFlags(buf: Uint8Array): number {
  need(buf, 4, 'client flags');
  return view(buf).readUInt32BE(0);
}

// ---------------------------------------------------------------- options (client → server)

export interface OptionHeader {
  readonly option: number;
  readonly length: number;
}

export function encodeOption(option: number, data: Uint8Array = Buffer.alloc(0)): Buffer {
  const b = Buffer.alloc(OPTION_HEADER_LENGTH + data.length);
  b.writeBigUInt64BE(IHAVEOPT, 0);
  b.writeUInt32BE(option >>> 0, 8);
  b.writeUInt32BE(data.length, 12);
  b.set(data, OPTION_HEADER_LENGTH);
  return b;
}

/** Decodes the 16-byte option header; a wrong magic means the stream is lost. */
export function decodeOptionHeader(buf: Uint8Array): OptionHeader {
  need(buf, OPTION_HEADER_LENGTH, 'an option header');
  const b = view(buf);
  if (b.readBigUInt64BE(0) !== IHAVEOPT) bad('an option does not start with IHAVEOPT');
  return { option: b.readUInt32BE(8), length: b.readUInt32BE(12) };
}

// ---------------------------------------------------------------- option replies (server → client)

export interface OptionReplyHeader {
  readonly option: number;
  readonly type: number;
  readonly length: number;
}

export function encodeOptionReply(option: number, type: number, data: Uint8Array = Buffer.alloc(0)): Buffer {
  const b = Buffer.alloc(OPTION_REPLY_HEADER_LENGTH + data.length);
  b.writeBigUInt64BE(OPTION_REPLY_MAGIC, 0);
  b.writeUInt32BE(option >>> 0, 8);
  b.writeUInt32BE(type >>> 0, 12);
  b.writeUInt32BE(data.length, 16);
  b.set(data, OPTION_REPLY_HEADER_LENGTH);
  return b;
}

/** An error reply carrying a message for a human. */
export function encodeOptionError(option: number, type: number, message: string): Buffer {
  return encodeOptionReply(option, type, encodeMessage(message));
}

export function decodeOptionReplyHeader(buf: Uint8Array): OptionReplyHeader {
  need(buf, OPTION_REPLY_HEADER_LENGTH, 'an option reply header');
  const b = view(buf);
  if (b.readBigUInt64BE(0) !== OPTION_REPLY_MAGIC) bad('an option reply has the wrong magic');
  return { option: b.readUInt32BE(8), type: b.readUInt32BE(12), length: b.readUInt32BE(16) };
}

/** The reply to NBD_OPT_EXPORT_NAME: size, transmission flags, and 124 zeroes unless NO_ZEROES. */
export function encodeExportNameReply(size: number, transmissionFlags: number, noZeroes: boolean): Buffer {
  const b = Buffer.alloc(noZeroes ? 10 : 134);
  b.writeBigUInt64BE(BigInt(size), 0);
  b.writeUInt16BE(transmissionFlags, 8);
  return b;
}

// ---------------------------------------------------------------- NBD_OPT_INFO / NBD_OPT_GO

export interface InfoRequest {
  readonly name: string;
  /** Information types asked for (NBD_INFO_*), in the order sent. */
  readonly requests: readonly number[];
}

export function encodeInfoRequest(r: InfoRequest): Buffer {
  const name = encodeString(r.name, 'an export name');
  const b = Buffer.alloc(4 + name.length + 2 + 2 * r.requests.length);
  b.writeUInt32BE(name.length, 0);
  b.set(name, 4);
  b.writeUInt16BE(r.requests.length, 4 + name.length);
  r.requests.forEach((t, i) => b.writeUInt16BE(t, 6 + name.length + 2 * i));
  return b;
}

export function decodeInfoRequest(buf: Uint8Array): InfoRequest {
  const b = view(buf);
  if (b.length < 6) bad(`an INFO/GO option needs at least 6 bytes, got ${b.length}`);
  const nameLength = b.readUInt32BE(0);
  if (nameLength > b.length - 6) bad('the export name reaches past the end of the option');
  const name = decodeString(b.subarray(4, 4 + nameLength), 'the export name');
  const count = b.readUInt16BE(4 + nameLength);
  if (b.length !== 6 + nameLength + 2 * count) bad(`the option length does not match ${count} information requests`);
  const requests: number[] = [];
  for (let i = 0; i < count; i++) requests.push(b.readUInt16BE(6 + nameLength + 2 * i));
  if (new Set(requests).size !== requests.length) bad('an information request is listed twice');
  return { name, requests };
}

export function encodeInfoExport(size: number, transmissionFlags: number): Buffer {
  const b = Buffer.alloc(12);
  b.writeUInt16BE(Info.EXPORT, 0);
  b.writeBigUInt64BE(BigInt(size), 2);
  b.writeUInt16BE(transmissionFlags, 10);
  return b;
}

function encodeInfoText(type: number, text: Buffer): Buffer {
  const b = Buffer.alloc(2 + text.length);
  b.writeUInt16BE(type, 0);
  b.set(text, 2);
  return b;
}

export function encodeInfoName(name: string): Buffer {
  return encodeInfoText(Info.NAME, encodeString(name, 'an export name'));
}

export function encodeInfoDescription(text: string): Buffer {
  return encodeInfoText(Info.DESCRIPTION, encodeMessage(text));
}

export interface BlockSizes {
  readonly minimum: number;
  readonly preferred: number;
  readonly maximum: number;
}

export function encodeInfoBlockSize(s: BlockSizes): Buffer {
  const b = Buffer.alloc(14);
  b.writeUInt16BE(Info.BLOCK_SIZE, 0);
  b.writeUInt32BE(s.minimum, 2);
  b.writeUInt32BE(s.preferred, 6);
  b.writeUInt32BE(s.maximum, 10);
  return b;
}

export type InfoReply =
  | { readonly type: 'export'; readonly size: number; readonly flags: number }
  | { readonly type: 'name'; readonly name: string }
  | { readonly type: 'description'; readonly text: string }
  | { readonly type: 'block-size'; readonly sizes: BlockSizes }
  | { readonly type: 'unknown'; readonly info: number };

/** Decodes the payload of an NBD_REP_INFO reply; unknown types are passed on, as the client must ignore them. */
export function decodeInfoReply(buf: Uint8Array): InfoReply {
  const b = view(buf);
  if (b.length < 2) bad('an NBD_REP_INFO reply is shorter than 2 bytes');
  const info = b.readUInt16BE(0);
  switch (info) {
    case Info.EXPORT: {
      if (b.length !== 12) bad(`NBD_INFO_EXPORT must be 12 bytes, got ${b.length}`);
      const size = b.readBigUInt64BE(2);
      if (size > BigInt(Number.MAX_SAFE_INTEGER)) bad(`the export size ${size} is beyond what we can address`);
      return { type: 'export', size: Number(size), flags: b.readUInt16BE(10) };
    }
    case Info.NAME:
      return { type: 'name', name: decodeString(b.subarray(2), 'the export name') };
    case Info.DESCRIPTION:
      return { type: 'description', text: decodeString(b.subarray(2), 'the export description') };
    case Info.BLOCK_SIZE:
      if (b.length !== 14) bad(`NBD_INFO_BLOCK_SIZE must be 14 bytes, got ${b.length}`);
      return { type: 'block-size', sizes: { minimum: b.readUInt32BE(2), preferred: b.readUInt32BE(6), maximum: b.readUInt32BE(10) } };
    default:
      return { type: 'unknown', info };
  }
}

// ---------------------------------------------------------------- NBD_OPT_LIST

export function encodeServerReply(name: string, description = ''): Buffer {
  const n = encodeString(name, 'an export name');
  const d = encodeMessage(description, MAX_STRING_BYTES);
  const b = Buffer.alloc(4 + n.length + d.length);
  b.writeUInt32BE(n.length, 0);
  b.set(n, 4);
  b.set(d, 4 + n.length);
  return b;
}

export function decodeServerReply(buf: Uint8Array): { name: string; description: string } {
  const b = view(buf);
  if (b.length < 4) bad('an NBD_REP_SERVER reply is shorter than 4 bytes');
  const n = b.readUInt32BE(0);
  if (n > b.length - 4) bad('the export name reaches past the end of the NBD_REP_SERVER reply');
  return { name: decodeString(b.subarray(4, 4 + n), 'the export name'), description: decodeString(b.subarray(4 + n), 'the export description') };
}

// ---------------------------------------------------------------- metadata contexts

export interface MetaContextRequest {
  readonly name: string;
  readonly queries: readonly string[];
}

export function encodeMetaContextRequest(r: MetaContextRequest): Buffer {
  const name = encodeString(r.name, 'an export name');
  const queries = r.queries.map((q) => encodeString(q, 'a metadata context query'));
  const b = Buffer.alloc(8 + name.length + queries.reduce((n, q) => n + 4 + q.length, 0));
  let at = 0;
  b.writeUInt32BE(name.length, at);
  b.set(name, (at += 4));
  b.writeUInt32BE(queries.length, (at += name.length));
  at += 4;
  for (const q of queries) {
    b.writeUInt32BE(q.length, at);
    b.set(q, at + 4);
    at += 4 + q.length;
  }
  return b;
}

/** Decodes the data of NBD_OPT_LIST_META_CONTEXT and NBD_OPT_SET_META_CONTEXT. */
export function decodeMetaContextRequest(buf: Uint8Array): MetaContextRequest {
  const b = view(buf);
  let at = 0;
  const u32 = (what: string): number => {
    if (at + 4 > b.length) bad(`${what} reaches past the end of the option`);
    const v = b.readUInt32BE(at);
    at += 4;
    return v;
  };
  const str = (length: number, what: string): string => {
    if (length > b.length - at) bad(`${what} reaches past the end of the option`);
    const s = decodeString(b.subarray(at, at + length), what);
    at += length;
    return s;
  };
  const name = str(u32('the export name length'), 'the export name');
  const count = u32('the query count');
  if (count > MAX_QUERIES) bad(`${count} metadata context queries; at most ${MAX_QUERIES} are accepted`);
  const queries: string[] = [];
  for (let i = 0; i < count; i++) queries.push(str(u32('a query length'), 'a metadata context query'));
  if (at !== b.length) bad('the option has bytes after its last query');
  return { name, queries };
}

export function encodeMetaContextReply(id: number, name: string): Buffer {
  const n = encodeString(name, 'a metadata context name');
  const b = Buffer.alloc(4 + n.length);
  b.writeUInt32BE(id >>> 0, 0);
  b.set(n, 4);
  return b;
}

export function decodeMetaContextReply(buf: Uint8Array): { id: number; name: string } {
  const b = view(buf);
  if (b.length < 4) bad('an NBD_REP_META_CONTEXT reply is shorter than 4 bytes');
  return { id: b.readUInt32BE(0), name: decodeString(b.subarray(4), 'a metadata context name') };
}
