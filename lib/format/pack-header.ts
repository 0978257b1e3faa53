/**
 * Pack files: blobs back to back, then a header listing them, then a fixed trailer.
 *
 *     blob 0 | blob 1 | … | blob n-1 | header (n × 48 bytes) | trailer (32 bytes)
 *
 * Header entry (48 bytes, in blob order; a blob's offset is the sum of the stored
 * lengths before it):
 *
 *     0   32  SHA-256 of the blob's raw (uncompressed) content
 *     32  u32 stored length (bytes in the pack)
 *     36  u32 raw length
 *     40  u8  kind: 1 data chunk, 2 chunk list
 *     41  u8  compression: 0 none, 1 raw deflate
 *     42  u16 reserved (0)
 *     44  u32 reserved (0)
 *
 * Trailer (32 bytes): magic `DDPK\r\n\x1a\n`, u16 version, u16 flags (0), u32 blob
 * count, u32 CRC-32 of the header, 8 random bytes (nonce), u32 reserved (0).
 *
 * A pack is named by the SHA-256 of its header and trailer: the header names every
 * blob by the hash of its content, so a reader can check both the header (against
 * the name) and each blob (against its hash). The nonce makes every pack written a
 * new name, even with the same blobs: prune deletes packs by name, and must never
 * delete a pack a concurrent backup has just written again. The header is at the
 * end so a pack is written in one pass. The index carries a byte-exact copy of each
 * pack's header and trailer.
 */
import { createHash, randomBytes } from 'node:crypto';
import { crc32 } from 'node:zlib';
import { DeltaDiskError } from '../errors.js';
import { HASH_SIZE, MAX_BLOB_SIZE, MAX_PACK_BLOBS, MAX_PACK_SIZE, REPO_FORMAT_VERSION } from './repo-limits.js';

export const PACK_MAGIC = Buffer.from('DDPK\r\n\x1a\n', 'latin1');
export const PACK_ENTRY_SIZE = 48;
export const PACK_TRAILER_SIZE = 32;

export const BlobKind = { DATA: 1, LIST: 2 } as const;
export type BlobKind = (typeof BlobKind)[keyof typeof BlobKind];

export const Compression = { NONE: 0, DEFLATE: 1 } as const;
export type Compression = (typeof Compression)[keyof typeof Compression];

export interface PackEntry {
  readonly hash: Buffer;
  readonly offset: number;
  readonly storedLength: number;
  readonly rawLength: number;
  readonly kind: BlobKind;
  readonly compression: Compression;
}

export interface BlobDescription {
  readonly hash: Uint8Array;
  readonly storedLength: number;
  readonly rawLength: number;
  readonly kind: BlobKind;
  readonly compression: Compression;
}

/** Header and trailer for blobs stored in this order. */
export function encodePackTail(blobs: readonly BlobDescription[]): Buffer {
  if (blobs.length === 0 || blobs.length > MAX_PACK_BLOBS) {
    throw new DeltaDiskError('LIMIT_EXCEEDED', `a pack holds 1 to ${MAX_PACK_BLOBS} blobs, not ${blobs.length}`);
  }
  const out = Buffer.alloc(blobs.length * PACK_ENTRY_SIZE + PACK_TRAILER_SIZE);
  blobs.forEach((b, i) => {
    const at = i * PACK_ENTRY_SIZE;
    out.set(b.hash, at);
    out.writeUInt32LE(b.storedLength, at + 32);
    out.writeUInt32LE(b.rawLength, at + 36);
    out.writeUInt8(b.kind, at + 40);
    out.writeUInt8(b.compression, at + 41);
  });
  const t = blobs.length * PACK_ENTRY_SIZE;
  PACK_MAGIC.copy(out, t);
  out.writeUInt16LE(REPO_FORMAT_VERSION, t + 8);
  out.writeUInt16LE(0, t + 10);
  out.writeUInt32LE(blobs.length, t + 12);
  out.writeUInt32LE(crc32(out.subarray(0, t)), t + 16);
  randomBytes(8).copy(out, t + 20);
  out.writeUInt32LE(0, t + 28);
  return out;
}

/** The name of a pack with this header and trailer (hex SHA-256). */
export function packNameOf(tail: Uint8Array): string {
  return createHash('sha256').update(tail).digest('hex');
}

function corrupt(message: string, path?: string): never {
  throw new DeltaDiskError('REPO_CORRUPT', `pack: ${message}`, { path });
}

/**
 * Reads the trailer (the last 32 bytes of a pack of `packSize` bytes) and returns
 * how many header bytes precede it.
 * @throws REPO_CORRUPT, UNSUPPORTED_VERSION, LIMIT_EXCEEDED
 */
export function decodePackTrailer(trailer: Uint8Array, packSize: number, path?: string): { count: number; headerLength: number; crc: number } {
  const t = Buffer.from(trailer.buffer, trailer.byteOffset, trailer.byteLength);
  if (packSize > MAX_PACK_SIZE) throw new DeltaDiskError('LIMIT_EXCEEDED', `pack is ${packSize} bytes, at most ${MAX_PACK_SIZE} allowed`, { path });
  if (t.length !== PACK_TRAILER_SIZE || packSize < PACK_TRAILER_SIZE) corrupt('too short for a trailer', path);
  if (!t.subarray(0, 8).equals(PACK_MAGIC)) corrupt('bad trailer magic', path);
  const version = t.readUInt16LE(8);
  const flags = t.readUInt16LE(10);
  if (version !== REPO_FORMAT_VERSION || flags !== 0) {
    throw new DeltaDiskError('UNSUPPORTED_VERSION', `pack version ${version}, flags ${flags} is not supported`, { path });
  }
  const count = t.readUInt32LE(12);
  if (count < 1 || count > MAX_PACK_BLOBS) corrupt(`blob count ${count} is out of range`, path);
  const headerLength = count * PACK_ENTRY_SIZE;
  if (headerLength + PACK_TRAILER_SIZE > packSize) corrupt('header longer than the pack', path);
  if (t.readUInt32LE(28) !== 0) corrupt('reserved trailer field is not zero', path);
  return { count, headerLength, crc: t.readUInt32LE(16) };
}

/**
 * Decodes a pack's header and trailer (`tail`, the last bytes of the pack) and
 * checks them against the pack's size: the stored lengths must fill the pack exactly.
 * @throws REPO_CORRUPT, UNSUPPORTED_VERSION, LIMIT_EXCEEDED
 */
export function decodePackTail(tail: Uint8Array, packSize: number, path?: string): PackEntry[] {
  const count = validatePackTail(tail, packSize, path);
  const b = Buffer.from(tail.buffer, tail.byteOffset, tail.byteLength);
  const entries: PackEntry[] = [];
  let offset = 0;
  for (let i = 0; i < count; i++) {
    const at = i * PACK_ENTRY_SIZE;
    const storedLength = b.readUInt32LE(at + 32);
    entries.push({ hash: Buffer.from(b.subarray(at, at + HASH_SIZE)), offset, storedLength, rawLength: b.readUInt32LE(at + 36), kind: b[at + 40] as BlobKind, compression: b[at + 41] as Compression });
    offset += storedLength;
  }
  return entries;
}

/**
 * Validates a pack's header and trailer like {@link decodePackTail}, building
 * nothing: the index loader's path, run over every entry of every pack on each
 * repository open. Entry `i` is then read in place at `i * PACK_ENTRY_SIZE`: hash
 * (32 bytes), stored and raw length (u32 LE at +32, +36), kind (+40), compression (+41).
 * @returns the number of entries
 * @throws REPO_CORRUPT, UNSUPPORTED_VERSION, LIMIT_EXCEEDED
 */
export function validatePackTail(tail: Uint8Array, packSize: number, path?: string): number {
  const b = Buffer.from(tail.buffer, tail.byteOffset, tail.byteLength);
  if (b.length < PACK_TRAILER_SIZE) corrupt('too short for a trailer', path);
  const { count, headerLength, crc } = decodePackTrailer(b.subarray(b.length - PACK_TRAILER_SIZE), packSize, path);
  if (b.length !== headerLength + PACK_TRAILER_SIZE) corrupt(`header of ${b.length - PACK_TRAILER_SIZE} bytes, the trailer says ${headerLength}`, path);
  if (crc32(b.subarray(0, headerLength)) !== crc) corrupt('header checksum mismatch', path);
  const dataLength = packSize - headerLength - PACK_TRAILER_SIZE;
  // DataView reads are builtins: this loop runs over every entry of every pack, cold.
  const v = new DataView(b.buffer, b.byteOffset, headerLength);
  let offset = 0;
  for (let i = 0; i < count; i++) {
    const at = i * PACK_ENTRY_SIZE;
    const storedLength = v.getUint32(at + 32, true);
    const rawLength = v.getUint32(at + 36, true);
    const kind = v.getUint8(at + 40);
    const compression = v.getUint8(at + 41);
    if (kind !== BlobKind.DATA && kind !== BlobKind.LIST) corrupt(`blob ${i} has kind ${kind}`, path);
    if (compression !== Compression.NONE && compression !== Compression.DEFLATE) corrupt(`blob ${i} has compression ${compression}`, path);
    if (v.getUint16(at + 42, true) !== 0 || v.getUint32(at + 44, true) !== 0) corrupt(`blob ${i} has non-zero reserved fields`, path);
    if (rawLength < 1 || rawLength > MAX_BLOB_SIZE || storedLength < 1 || storedLength > MAX_BLOB_SIZE) {
      corrupt(`blob ${i} has lengths ${storedLength}/${rawLength} out of range`, path);
    }
    if (compression === Compression.NONE ? storedLength !== rawLength : storedLength >= rawLength) {
      corrupt(`blob ${i} stored length ${storedLength} does not fit raw length ${rawLength}`, path);
    }
    if (kind === BlobKind.LIST && rawLength % HASH_SIZE !== 0) corrupt(`list blob ${i} is not a whole number of hashes`, path);
    if (offset + storedLength > dataLength) corrupt(`blob ${i} runs past the data area`, path);
    offset += storedLength;
  }
  if (offset !== dataLength) corrupt(`blobs fill ${offset} bytes, the pack holds ${dataLength}`, path);
  return count;
}
