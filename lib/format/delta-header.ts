/**
 * Encode and decode the header of a delta file (format version 1).
 *
 * A delta has two header slots of 4 KiB at offsets 0 and 4096. Each slot holds:
 *
 *     0   8  magic "DDLT\r\n\x1a\n"
 *     8   2  format version, u16 LE (1)
 *     10  2  flags, u16 LE (0; any other value is refused)
 *     12  4  payload length, u32 LE (at most 4076)
 *     16  4  CRC-32 of bytes 0..15 followed by the payload
 *     20  n  payload: a msgpack map (see {@link DeltaHeader})
 *
 * Writers alternate slots and bump `generation`; readers take the valid slot with
 * the higher generation, so a header torn by a crash falls back to the previous
 * one, which is still correct (the log is append-only). docs/FORMAT.md.
 */
import { crc32 } from 'node:zlib';
import { decode, encode } from '@msgpack/msgpack';
import { DeltaDiskError } from '../errors.js';
import { HEADER_SLOT_SIZE, MAX_BASE_PATH, MAX_FILE_OFFSET, MAX_NAME_LENGTH, MAX_VIRTUAL_SIZE, isValidBlockSize } from './limits.js';

export const DELTA_MAGIC = Buffer.from('DDLT\r\n\x1a\n', 'latin1');
export const DELTA_FORMAT_VERSION = 1;
const FIXED = 20;
export const MAX_HEADER_PAYLOAD = HEADER_SLOT_SIZE - FIXED;

/**
 * The snapshot a layer carries, as mirrored into its header. The description is not
 * mirrored: it may be longer than a header slot holds, and a descriptor rebuilt from
 * headers can live without it.
 */
export interface SnapshotTag {
  readonly id: string;
  readonly name: string;
  readonly created: string;
}

export interface DeltaHeader {
  readonly diskId: string;
  readonly layerId: string;
  /** null: the layer sits directly on the base. */
  readonly parentId: string | null;
  /** File name of the parent delta in the same directory (informational, for rebuilding). */
  readonly parentFile: string | null;
  /** The disk's base, as the descriptor names it (for rebuilding a lost descriptor). */
  readonly base: { readonly file: string; readonly size: number; readonly fingerprint: string } | null;
  readonly blockSize: number;
  readonly virtualSize: number;
  /** Increases by one with every header write. */
  readonly generation: number;
  /** Sealed layers never get new blocks of their own (a snapshot, or a shared layer). */
  readonly sealed: boolean;
  /** The snapshot this layer carries, mirrored from the descriptor for rebuilding it. */
  readonly snapshot: SnapshotTag | null;
  /** Records before this offset are listed in map segments (or were verified). */
  readonly logEnd: number;
  /** Sequence number the record at `logEnd` must carry. */
  readonly nextSeq: number;
  /** Offset of the newest map segment record, 0 when there is none. */
  readonly lastSegment: number;
  readonly created: string;
}

function fail(message: string, path?: string): never {
  throw new DeltaDiskError('CHAIN_CORRUPT', message, { path });
}

function isSafeNonNeg(v: unknown, max = MAX_FILE_OFFSET): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0 && v <= max;
}

function isId(v: unknown): v is string {
  return typeof v === 'string' && /^[0-9a-f-]{8,64}$/.test(v);
}

function str(v: unknown, max: number): v is string {
  return typeof v === 'string' && v.length <= max;
}

/**
 * Encodes a header slot. A header that would not decode again (a generation or log
 * position carried past 2^53 - 1 from a crafted file, say) is refused with
 * CHAIN_CORRUPT before any byte is written: written, it would make the layer
 * unreadable, where refusing leaves the file as it was.
 */
export function encodeDeltaHeader(h: DeltaHeader): Buffer {
  const payload = encode({
    diskId: h.diskId,
    layerId: h.layerId,
    parentId: h.parentId,
    parentFile: h.parentFile,
    base: h.base,
    blockSize: h.blockSize,
    virtualSize: h.virtualSize,
    generation: h.generation,
    sealed: h.sealed,
    snapshot: h.snapshot === null ? null : { id: h.snapshot.id, name: h.snapshot.name, created: h.snapshot.created },
    logEnd: h.logEnd,
    nextSeq: h.nextSeq,
    lastSegment: h.lastSegment,
    created: h.created,
  });
  if (payload.length > MAX_HEADER_PAYLOAD) {
    throw new DeltaDiskError('LIMIT_EXCEEDED', `delta header needs ${payload.length} bytes, at most ${MAX_HEADER_PAYLOAD} fit`);
  }
  try {
    validateHeader(h);
  } catch (err) {
    const why = err instanceof DeltaDiskError ? err.message : String(err);
    throw new DeltaDiskError('CHAIN_CORRUPT', `refusing to write a delta header that would not read back: ${why}`);
  }
  const slot = Buffer.alloc(HEADER_SLOT_SIZE);
  DELTA_MAGIC.copy(slot, 0);
  slot.writeUInt16LE(DELTA_FORMAT_VERSION, 8);
  slot.writeUInt16LE(0, 10);
  slot.writeUInt32LE(payload.length, 12);
  slot.set(payload, FIXED);
  slot.writeUInt32LE(crc32(payload, crc32(slot.subarray(0, 16))), 16);
  return slot;
}

/**
 * Decodes one header slot. Returns undefined for a slot that is empty, torn or
 * checksum-damaged (the other slot may still be good); throws UNSUPPORTED_VERSION
 * for a well-formed slot of another format version, and CHAIN_CORRUPT for a slot
 * whose checksum holds but whose content is impossible.
 */
export function decodeDeltaHeader(slot: Uint8Array, path?: string): DeltaHeader | undefined {
  if (slot.length < FIXED) return undefined;
  const b = Buffer.from(slot.buffer, slot.byteOffset, slot.byteLength);
  if (!b.subarray(0, 8).equals(DELTA_MAGIC)) return undefined;
  const len = b.readUInt32LE(12);
  if (len > MAX_HEADER_PAYLOAD || FIXED + len > b.length) return undefined;
  const payload = b.subarray(FIXED, FIXED + len);
  if (crc32(payload, crc32(b.subarray(0, 16))) !== b.readUInt32LE(16)) return undefined;
  const version = b.readUInt16LE(8);
  if (version !== DELTA_FORMAT_VERSION) {
    throw new DeltaDiskError('UNSUPPORTED_VERSION', `delta format version ${version} is not supported (this build reads version ${DELTA_FORMAT_VERSION})`, { path });
  }
  if (b.readUInt16LE(10) !== 0) {
    throw new DeltaDiskError('UNSUPPORTED_VERSION', `delta header has unknown feature flags ${b.readUInt16LE(10)}`, { path });
  }
  let v: unknown;
  try {
    v = decode(payload, { maxStrLength: 4096, maxBinLength: 0, maxArrayLength: 16, maxMapLength: 32, maxExtLength: 0 });
  } catch {
    fail('delta header payload is not valid msgpack', path);
  }
  return validateHeader(v, path);
}

function validateHeader(v: unknown, path?: string): DeltaHeader {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) fail('delta header is not a map', path);
  const o = v as Record<string, unknown>;
  if (!isId(o.diskId) || !isId(o.layerId)) fail('delta header has an invalid disk or layer id', path);
  if (o.parentId !== null && !isId(o.parentId)) fail('delta header has an invalid parent id', path);
  if (o.parentId === o.layerId) fail('delta header names itself as its parent', path);
  if (o.parentFile !== null && !str(o.parentFile, MAX_NAME_LENGTH)) fail('delta header has an invalid parent file', path);
  let base: DeltaHeader['base'] = null;
  if (o.base !== null && o.base !== undefined) {
    const b = o.base as Record<string, unknown> | undefined;
    if (
      typeof b !== 'object' || b === null || !str(b.file, MAX_BASE_PATH) || b.file.length === 0 ||
      !isSafeNonNeg(b.size, MAX_VIRTUAL_SIZE) || typeof b.fingerprint !== 'string' || !/^[0-9a-f]{64}$/.test(b.fingerprint)
    ) {
      fail('delta header has an invalid base reference', path);
    }
    base = { file: b.file, size: b.size, fingerprint: b.fingerprint };
  }
  if (!isSafeNonNeg(o.blockSize) || !isValidBlockSize(o.blockSize)) fail(`delta header has an invalid block size ${String(o.blockSize)}`, path);
  if (!isSafeNonNeg(o.virtualSize, MAX_VIRTUAL_SIZE) || o.virtualSize === 0) fail(`delta header has an invalid virtual size ${String(o.virtualSize)}`, path);
  if (!isSafeNonNeg(o.generation) || o.generation === 0) fail('delta header has an invalid generation', path);
  if (typeof o.sealed !== 'boolean') fail('delta header has an invalid sealed flag', path);
  if (!isSafeNonNeg(o.logEnd) || !isSafeNonNeg(o.nextSeq) || o.nextSeq === 0 || !isSafeNonNeg(o.lastSegment)) {
    fail('delta header has an invalid log position', path);
  }
  if (o.lastSegment >= o.logEnd && o.lastSegment !== 0) fail('delta header points at a map segment past its log end', path);
  if (!str(o.created, 64)) fail('delta header has an invalid creation time', path);
  let snapshot: SnapshotTag | null = null;
  if (o.snapshot !== null) {
    const s = o.snapshot as Record<string, unknown> | undefined;
    if (
      typeof s !== 'object' || s === null ||
      !isId(s.id) || !str(s.name, MAX_NAME_LENGTH) || !str(s.created, 64)
    ) {
      fail('delta header has an invalid snapshot tag', path);
    }
    snapshot = { id: s.id, name: s.name, created: s.created };
  }
  return {
    diskId: o.diskId,
    layerId: o.layerId,
    parentId: o.parentId,
    parentFile: o.parentFile,
    base,
    blockSize: o.blockSize,
    virtualSize: o.virtualSize,
    generation: o.generation,
    sealed: o.sealed,
    snapshot,
    logEnd: o.logEnd,
    nextSeq: o.nextSeq,
    lastSegment: o.lastSegment,
    created: o.created,
  };
}
