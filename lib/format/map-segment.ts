/**
 * Encode and decode map segments: the index of a delta's log (format version 1).
 *
 * A map segment is the payload of a MAPSEG record. It lists, in log order and one
 * entry per block, the records written since the previous segment, so opening a
 * layer reads its segments instead of scanning every record. Columns are
 * little-endian arrays inside a msgpack map:
 *
 *     v        1
 *     prev     offset of the previous MAPSEG record (0: none, or `full`)
 *     full     true: lists every record still of use; earlier segments need not be read
 *     first    offset of the first record listed
 *     end      offset just past the last record listed
 *     firstSeq sequence number of the first record listed
 *     count    number of entries (at most 65536)
 *     kinds    bin, count × u8   (DATA, ZERO, REF, BLOB)
 *     blocks   bin, count × f64  (block index; 0 for BLOB)
 *     offsets  bin, count × f64  (DATA, BLOB: file offset of the block's bytes;
 *                                 ZERO, REF: file offset of the record header)
 *     crcs     bin, count × u32  (DATA, BLOB: CRC-32 of the block's bytes; else 0)
 *     hashes   bin, count × 32   (SHA-256 of the content; all zero when not computed)
 *
 * A segment is written only after the records it lists are durable, and the header
 * points at it only after the segment itself is durable.
 */
import os from 'node:os';
import { decode, encode } from '@msgpack/msgpack';
import { DeltaDiskError } from '../errors.js';
import { MAX_FILE_OFFSET, MAX_SEGMENT_ENTRIES } from './limits.js';
import { RecordKind } from './record.js';

if (os.endianness() !== 'LE') {
  throw new Error('deltadisk stores little-endian typed arrays and needs a little-endian platform');
}

export const HASH_SIZE = 32;

export interface SegmentEntries {
  readonly count: number;
  readonly kinds: Uint8Array;
  readonly blocks: Float64Array;
  readonly offsets: Float64Array;
  readonly crcs: Uint32Array;
  readonly hashes: Uint8Array;
}

export interface MapSegment extends SegmentEntries {
  readonly prev: number;
  readonly full: boolean;
  readonly first: number;
  readonly end: number;
  readonly firstSeq: number;
}

function bytesOf(a: Float64Array | Uint32Array | Uint8Array): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

export function encodeMapSegment(s: MapSegment): Uint8Array {
  if (s.count > MAX_SEGMENT_ENTRIES) {
    throw new DeltaDiskError('LIMIT_EXCEEDED', `map segment of ${s.count} entries exceeds ${MAX_SEGMENT_ENTRIES}`);
  }
  return encode({
    v: 1,
    prev: s.prev,
    full: s.full,
    first: s.first,
    end: s.end,
    firstSeq: s.firstSeq,
    count: s.count,
    kinds: bytesOf(s.kinds.subarray(0, s.count)),
    blocks: bytesOf(s.blocks.subarray(0, s.count)),
    offsets: bytesOf(s.offsets.subarray(0, s.count)),
    crcs: bytesOf(s.crcs.subarray(0, s.count)),
    hashes: s.hashes.subarray(0, s.count * HASH_SIZE),
  });
}

function corrupt(message: string, path?: string, offset?: number): never {
  throw new DeltaDiskError('CHAIN_CORRUPT', `map segment: ${message}`, { path, offset });
}

function column(v: unknown, bytes: number, name: string, path?: string, offset?: number): Uint8Array {
  if (!(v instanceof Uint8Array) || v.length !== bytes) corrupt(`column ${name} has the wrong length`, path, offset);
  return new Uint8Array(v); // an aligned private copy (Buffer#slice would be a view)
}

/**
 * Decodes and validates a map segment payload read from `path` at `offset`.
 * @param maxBlocks number of blocks of the virtual disk; every listed block must be below it.
 */
export function decodeMapSegment(
  payload: Uint8Array,
  maxBlocks: number,
  blockSize: number,
  path?: string,
  offset?: number,
): MapSegment {
  let v: unknown;
  try {
    v = decode(payload, {
      maxStrLength: 64,
      maxBinLength: MAX_SEGMENT_ENTRIES * HASH_SIZE,
      maxArrayLength: 0,
      maxMapLength: 16,
      maxExtLength: 0,
    });
  } catch {
    corrupt('payload is not valid msgpack', path, offset);
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) corrupt('payload is not a map', path, offset);
  const o = v as Record<string, unknown>;
  if (typeof o.v !== 'number') corrupt('version is missing', path, offset);
  if (o.v !== 1) {
    throw new DeltaDiskError('UNSUPPORTED_VERSION', `map segment version ${String(o.v)} is not supported`, { path, offset });
  }
  const nums = ['prev', 'first', 'end', 'firstSeq', 'count'] as const;
  for (const k of nums) {
    const x = o[k];
    if (typeof x !== 'number' || !Number.isSafeInteger(x) || x < 0 || x > MAX_FILE_OFFSET) corrupt(`field ${k} is invalid`, path, offset);
  }
  const count = o.count as number;
  if (count > MAX_SEGMENT_ENTRIES) {
    throw new DeltaDiskError('LIMIT_EXCEEDED', `map segment lists ${count} records, at most ${MAX_SEGMENT_ENTRIES} allowed`, { path, offset });
  }
  if (typeof o.full !== 'boolean') corrupt('field full is invalid', path, offset);
  const first = o.first as number;
  const end = o.end as number;
  const prev = o.prev as number;
  if (first > end || (offset !== undefined && end > offset) || (prev !== 0 && prev >= first && !o.full)) {
    corrupt('record range is inconsistent', path, offset);
  }
  const kinds = column(o.kinds, count, 'kinds', path, offset);
  const blocks = new Float64Array(column(o.blocks, count * 8, 'blocks', path, offset).buffer);
  const offsets = new Float64Array(column(o.offsets, count * 8, 'offsets', path, offset).buffer);
  const crcs = new Uint32Array(column(o.crcs, count * 4, 'crcs', path, offset).buffer);
  const hashes = column(o.hashes, count * HASH_SIZE, 'hashes', path, offset);
  let last = -1;
  let dataEnd = first;
  for (let i = 0; i < count; i++) {
    const k = kinds[i]!;
    if (k !== RecordKind.DATA && k !== RecordKind.ZERO && k !== RecordKind.REF && k !== RecordKind.BLOB) {
      corrupt(`entry ${i} has kind ${k}`, path, offset);
    }
    const b = blocks[i]!;
    if (!Number.isSafeInteger(b) || b < 0 || b >= maxBlocks) corrupt(`entry ${i} names block ${b} outside the disk`, path, offset);
    const off = offsets[i]!;
    if (!Number.isSafeInteger(off) || off < last || off < first || off >= end) {
      corrupt(`entry ${i} has offset ${off} out of order or range`, path, offset);
    }
    if (k === RecordKind.DATA || k === RecordKind.BLOB) {
      // Block data never overlaps other data and lies inside the listed range.
      if (off < dataEnd || off + blockSize > end) corrupt(`entry ${i} data at ${off} overlaps or runs past the range`, path, offset);
      dataEnd = off + blockSize;
    }
    last = off;
  }
  return { prev, full: o.full, first, end, firstSeq: o.firstSeq as number, count, kinds, blocks, offsets, crcs, hashes };
}
