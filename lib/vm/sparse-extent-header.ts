/**
 * The 512-byte header of a hosted sparse VMDK extent ("KDMV"), and the magic numbers
 * of the other binary extents (ESX `COWD`, SE sparse).
 *
 * Pure (no I/O). Every 64-bit field is read as a BigInt and bounded before it
 * becomes a number. Refused, each with a typed error, before anything is allocated:
 *  - `kdmv` (a file VMware was still writing): VM_INVALID;
 *  - versions above 3, unknown incompatible flags, grain tables other than 512
 *    entries, unknown compression: UNSUPPORTED_VERSION;
 *  - a grain directory "at the end" (the streamOptimized footer layout): UNSUPPORTED,
 *    since its real header is a footer we would have to trust blindly;
 *  - an embedded descriptor anywhere but sector 1, or of 1 MiB or more, or
 *    overlapping the grain directories or the grains, or past the end of the file:
 *    VM_INVALID / LIMIT_EXCEEDED (the OpenStack format-inspector rules);
 *  - newline-detection bytes mangled by a text-mode transfer: VM_INVALID.
 */
import { DeltaDiskError } from '../errors.js';
import { MAX_VIRTUAL_SIZE } from '../format/limits.js';

export const SPARSE_HEADER_SIZE = 512;
export const KDMV_MAGIC = 0x564d444b; // "KDMV" little-endian
const KDMV_INCOMPLETE = 0x766d646b; // "kdmv": being written
export const COWD_MAGIC = 0x44574f43; // "COWD"
export const SESPARSE_MAGIC = 0xcafebaben;
export const GD_AT_END = 0xffffffffffffffffn;
/** The embedded descriptor must end before 1 MiB (2048 sectors from sector 0). */
export const MAX_EMBEDDED_DESCRIPTOR_SECTORS = 2047;

const FLAG_NEWLINE_TEST = 0x1;
const FLAG_REDUNDANT_GD = 0x2;
const FLAG_ZEROED_GTE = 0x4;
const FLAG_COMPRESSED = 0x10000;
const FLAG_MARKERS = 0x20000;
const KNOWN_INCOMPATIBLE = FLAG_COMPRESSED | FLAG_MARKERS;

export interface SparseExtentHeader {
  readonly version: number;
  readonly flags: number;
  /** Virtual size of this extent, in sectors. */
  readonly capacity: number;
  readonly grainSize: number;
  /** Sector of the embedded descriptor, 0 when there is none. */
  readonly descriptorOffset: number;
  readonly descriptorSize: number;
  readonly numGTEsPerGT: number;
  readonly rgdOffset: number;
  readonly gdOffset: number;
  readonly overHead: number;
  readonly uncleanShutdown: boolean;
  readonly compressAlgorithm: number;
  readonly compressed: boolean;
  readonly zeroedGrains: boolean;
}

export type ExtentKind = 'kdmv' | 'cowd' | 'sesparse' | 'other';

/** What kind of binary extent starts with these bytes (at least 8 needed). */
export function identifyExtent(head: Uint8Array): ExtentKind {
  if (head.length < 8) return 'other';
  const v = new DataView(head.buffer, head.byteOffset, head.byteLength);
  const m = v.getUint32(0, true);
  if (m === KDMV_MAGIC || m === KDMV_INCOMPLETE) return 'kdmv';
  if (m === COWD_MAGIC) return 'cowd';
  if (v.getBigUint64(0, true) === SESPARSE_MAGIC) return 'sesparse';
  return 'other';
}

function u64(v: DataView, at: number, field: string, what: string, max = BigInt(Number.MAX_SAFE_INTEGER)): number {
  const x = v.getBigUint64(at, true);
  if (x > max) throw new DeltaDiskError('VM_INVALID', `${what}: ${field} ${x} is out of range`, { offset: at });
  return Number(x);
}

/**
 * Decodes and validates a hosted sparse extent header.
 * @param fileSize the extent file's size in bytes (to bound the descriptor)
 * @throws VM_INVALID, UNSUPPORTED_VERSION, UNSUPPORTED, LIMIT_EXCEEDED, TRUNCATED
 */
export function decodeSparseExtentHeader(bytes: Uint8Array, fileSize: number, what = 'sparse extent'): SparseExtentHeader {
  if (bytes.length < SPARSE_HEADER_SIZE || fileSize < SPARSE_HEADER_SIZE) {
    throw new DeltaDiskError('TRUNCATED', `${what} is shorter than its 512-byte header`);
  }
  const v = new DataView(bytes.buffer, bytes.byteOffset, SPARSE_HEADER_SIZE);
  const magic = v.getUint32(0, true);
  if (magic === KDMV_INCOMPLETE) throw new DeltaDiskError('VM_INVALID', `${what} is incomplete (magic "kdmv": it was still being written)`);
  if (magic !== KDMV_MAGIC) throw new DeltaDiskError('VM_INVALID', `${what} is not a hosted sparse extent (no KDMV magic)`);
  const version = v.getUint32(4, true);
  if (version < 1 || version > 3) throw new DeltaDiskError('UNSUPPORTED_VERSION', `${what}: sparse extent version ${version} is not supported (1 to 3 are)`);
  const flags = v.getUint32(8, true);
  const unknownIncompatible = (flags & 0xffff0000) & ~KNOWN_INCOMPATIBLE;
  if (unknownIncompatible !== 0) {
    throw new DeltaDiskError('UNSUPPORTED_VERSION', `${what}: unknown incompatible flags 0x${(unknownIncompatible >>> 0).toString(16)}`);
  }
  const capacity = u64(v, 12, 'capacity', what, BigInt(MAX_VIRTUAL_SIZE / 512));
  const grainSize = u64(v, 20, 'grainSize', what, 1n << 20n);
  if (grainSize === 0 || (grainSize & (grainSize - 1)) !== 0 || grainSize > 2048) {
    throw new DeltaDiskError('VM_INVALID', `${what}: grain size ${grainSize} sectors is not a power of two up to 2048`);
  }
  const descriptorOffset = u64(v, 28, 'descriptorOffset', what);
  const descriptorSize = u64(v, 36, 'descriptorSize', what);
  const numGTEsPerGT = v.getUint32(44, true);
  if (numGTEsPerGT !== 512) throw new DeltaDiskError('UNSUPPORTED_VERSION', `${what}: ${numGTEsPerGT} entries per grain table (only 512 is supported)`);
  const rgdOffset = u64(v, 48, 'rgdOffset', what);
  if (v.getBigUint64(56, true) === GD_AT_END) {
    throw new DeltaDiskError('UNSUPPORTED', `${what}: the grain directory is at the end (streamOptimized footer layout), which is refused`);
  }
  const gdOffset = u64(v, 56, 'gdOffset', what);
  const overHead = u64(v, 64, 'overHead', what);
  if ((flags & FLAG_NEWLINE_TEST) !== 0) {
    if (bytes[73] !== 0x0a || bytes[74] !== 0x20 || bytes[75] !== 0x0d || bytes[76] !== 0x0a) {
      throw new DeltaDiskError('VM_INVALID', `${what}: the newline-detection bytes are damaged (a text-mode transfer?)`);
    }
  }
  const compressAlgorithm = v.getUint16(77, true);
  if (compressAlgorithm > 1 || (compressAlgorithm === 1 && (flags & FLAG_COMPRESSED) === 0)) {
    throw new DeltaDiskError('UNSUPPORTED_VERSION', `${what}: compression algorithm ${compressAlgorithm} is not supported`);
  }
  const h: SparseExtentHeader = {
    version,
    flags,
    capacity,
    grainSize,
    descriptorOffset,
    descriptorSize,
    numGTEsPerGT,
    rgdOffset,
    gdOffset,
    overHead,
    uncleanShutdown: bytes[72] !== 0,
    compressAlgorithm,
    compressed: (flags & FLAG_COMPRESSED) !== 0,
    zeroedGrains: (flags & FLAG_ZEROED_GTE) !== 0,
  };
  checkDescriptorRange(h, fileSize, what);
  return h;
}

function checkDescriptorRange(h: SparseExtentHeader, fileSize: number, what: string): void {
  if (h.descriptorOffset === 0 && h.descriptorSize === 0) return;
  if (h.descriptorOffset !== 1) {
    throw new DeltaDiskError('VM_INVALID', `${what}: the embedded descriptor must start at sector 1, not ${h.descriptorOffset}`);
  }
  if (h.descriptorSize === 0) throw new DeltaDiskError('VM_INVALID', `${what}: the embedded descriptor has size 0`);
  if (h.descriptorSize > MAX_EMBEDDED_DESCRIPTOR_SECTORS) {
    throw new DeltaDiskError('LIMIT_EXCEEDED', `${what}: an embedded descriptor of ${h.descriptorSize} sectors exceeds ${MAX_EMBEDDED_DESCRIPTOR_SECTORS}`);
  }
  const end = h.descriptorOffset + h.descriptorSize;
  if (end * 512 > fileSize) throw new DeltaDiskError('TRUNCATED', `${what}: the embedded descriptor reaches past the end of the file`);
  const after = [h.gdOffset, (h.flags & FLAG_REDUNDANT_GD) !== 0 ? h.rgdOffset : 0, h.overHead].filter((x) => x !== 0);
  if (after.some((x) => x < end)) {
    throw new DeltaDiskError('VM_INVALID', `${what}: the embedded descriptor overlaps the grain directory or the grains`);
  }
}
