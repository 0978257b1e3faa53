/**
 * Encode and decode the records of a delta's append-only log (format version 1).
 *
 * Every record is a 48-byte header followed by its payload. A record covers a run
 * of `count` consecutive blocks starting at `block`, so a large sequential write is
 * one record whose data lies contiguous in the file:
 *
 *     0   4  magic "DDRC"
 *     4   1  kind (RecordKind)
 *     5   1  flags (0)
 *     6   2  reserved (0)
 *     8   8  sequence number, u64 LE: 1, 2, 3 … within the layer, no gaps
 *     16  8  first block index, u64 LE (0 for BLOB and MAPSEG)
 *     24  4  count: blocks in the run (1 for MAPSEG and PAD)
 *     28  4  payload length, u32 LE: DATA and BLOB count × block size,
 *            REF count × 32 (the SHA-256 of each block), ZERO 0, PAD any
 *     32  4  CRC-32 of the payload
 *     36  4  layer tag: the first 4 bytes of the layer id, so a record copied in
 *            from another delta is never mistaken for one of ours
 *     40  4  reserved (0)
 *     44  4  CRC-32 of bytes 0..43
 *
 * The sequence number is what makes the tail safe to scan after a crash: a record is
 * accepted only if it carries exactly the next number, its header CRC holds and its
 * payload CRC holds. The first record that fails any of these ends the log; bytes
 * beyond it are a torn tail and are discarded (truncated on the next writable open).
 *
 * PAD records (zeros) end every flush and every map segment on a LOG_ALIGN boundary:
 * a torn write can garble whole sectors around the bytes it wrote, and must never
 * reach a sector holding records already acknowledged.
 */
import { crc32 } from 'node:zlib';
import { DeltaDiskError } from '../errors.js';
import { LOG_ALIGN, MAX_RECORD_PAYLOAD } from './limits.js';

export const RECORD_HEADER_SIZE = 48;
const RECORD_MAGIC = 0x43524444; // "DDRC" little-endian

export const RecordKind = {
  /** The block's full content. */
  DATA: 1,
  /** The block reads as zeros (written zeros, or discarded). No payload. */
  ZERO: 2,
  /** The block's content is stored elsewhere in this layer or an ancestor; payload = its SHA-256. */
  REF: 3,
  /** Content kept only because references point at it; not mapped to a block. */
  BLOB: 4,
  /** A map segment: the list of the records before it (see map-segment.ts). */
  MAPSEG: 5,
  /** Padding to the next LOG_ALIGN boundary; payload zeros, no blocks. */
  PAD: 6,
} as const;
export type RecordKind = (typeof RecordKind)[keyof typeof RecordKind];

export function isRecordKind(k: number): k is RecordKind {
  return k >= 1 && k <= 6;
}

/**
 * Length (header included) of the PAD record that takes a log ending at `pos` to
 * the next LOG_ALIGN boundary, or one boundary further when the gap is shorter
 * than a record header; 0 when `pos` is on a boundary.
 */
export function paddingAt(pos: number): number {
  const gap = (LOG_ALIGN - (pos % LOG_ALIGN)) % LOG_ALIGN;
  return gap === 0 ? 0 : gap < RECORD_HEADER_SIZE ? gap + LOG_ALIGN : gap;
}

const ZEROS = Buffer.alloc(LOG_ALIGN + RECORD_HEADER_SIZE);

/** The buffers of a PAD record of `length` bytes (from `paddingAt`), to write at the log end. */
export function encodePadRecord(length: number, seq: number, tag: number): Buffer[] {
  const payload = ZEROS.subarray(0, length - RECORD_HEADER_SIZE);
  const header = Buffer.allocUnsafe(RECORD_HEADER_SIZE);
  encodeRecordHeader(header, 0, RecordKind.PAD, seq, 0, 1, payload.length, crc32(payload), tag);
  return [header, payload];
}

export interface RecordHeader {
  readonly kind: RecordKind;
  readonly seq: number;
  readonly block: number;
  readonly count: number;
  readonly payloadLength: number;
  readonly payloadCrc: number;
}

/** The 4-byte tag of a layer id, as stored in every record. */
export function layerTag(layerId: string): number {
  const hex = layerId.replace(/-/g, '').slice(0, 8);
  return Number.parseInt(hex.padEnd(8, '0'), 16) >>> 0;
}

function writeU64(b: Buffer, at: number, v: number): void {
  b.writeUInt32LE(v % 2 ** 32, at);
  b.writeUInt32LE(Math.floor(v / 2 ** 32), at + 4);
}

function readU64(b: Buffer, at: number): number | undefined {
  const lo = b.readUInt32LE(at);
  const hi = b.readUInt32LE(at + 4);
  if (hi >= 2 ** 21) return undefined; // would not be a safe integer
  return hi * 2 ** 32 + lo;
}

/** Encodes a record header into `target` at `at` (48 bytes). */
export function encodeRecordHeader(
  target: Buffer,
  at: number,
  kind: RecordKind,
  seq: number,
  block: number,
  count: number,
  payloadLength: number,
  payloadCrc: number,
  tag: number,
): void {
  if (payloadLength > MAX_RECORD_PAYLOAD) {
    throw new DeltaDiskError('LIMIT_EXCEEDED', `record payload of ${payloadLength} bytes exceeds ${MAX_RECORD_PAYLOAD}`);
  }
  target.writeUInt32LE(RECORD_MAGIC, at);
  target[at + 4] = kind;
  target[at + 5] = 0;
  target.writeUInt16LE(0, at + 6);
  writeU64(target, at + 8, seq);
  writeU64(target, at + 16, block);
  target.writeUInt32LE(count, at + 24);
  target.writeUInt32LE(payloadLength, at + 28);
  target.writeUInt32LE(payloadCrc >>> 0, at + 32);
  target.writeUInt32LE(tag >>> 0, at + 36);
  target.writeUInt32LE(0, at + 40);
  target.writeUInt32LE(crc32(target.subarray(at, at + 44)), at + 44);
}

/**
 * Decodes a record header. Returns undefined when the bytes are not an intact
 * header of this layer (wrong magic, tag or CRC, impossible field): the caller
 * treats that as the end of the log.
 */
export function decodeRecordHeader(bytes: Buffer, at: number, tag: number): RecordHeader | undefined {
  if (at + RECORD_HEADER_SIZE > bytes.length) return undefined;
  if (bytes.readUInt32LE(at) !== RECORD_MAGIC) return undefined;
  if (crc32(bytes.subarray(at, at + 44)) !== bytes.readUInt32LE(at + 44)) return undefined;
  if (bytes.readUInt32LE(at + 36) !== tag >>> 0) return undefined;
  const kind = bytes[at + 4]!;
  if (!isRecordKind(kind) || bytes[at + 5] !== 0 || bytes.readUInt16LE(at + 6) !== 0) return undefined;
  if (bytes.readUInt32LE(at + 40) !== 0) return undefined;
  const seq = readU64(bytes, at + 8);
  const block = readU64(bytes, at + 16);
  const count = bytes.readUInt32LE(at + 24);
  const payloadLength = bytes.readUInt32LE(at + 28);
  if (seq === undefined || block === undefined || payloadLength > MAX_RECORD_PAYLOAD || count === 0) return undefined;
  return { kind, seq, block, count, payloadLength, payloadCrc: bytes.readUInt32LE(at + 32) };
}
