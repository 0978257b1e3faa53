/**
 * Record headers of a delta's log (docs/FORMAT.md, "Records"): a round trip, and
 * one hand-built header per rule that makes a reader treat it as the end of the log.
 */
import { crc32 } from 'node:zlib';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { isDeltaDiskError } from '../../lib/errors.js';
import { MAX_RECORD_PAYLOAD } from '../../lib/format/limits.js';
import {
  decodeRecordHeader,
  encodePadRecord,
  encodeRecordHeader,
  isRecordKind,
  layerTag,
  paddingAt,
  RECORD_HEADER_SIZE,
  RecordKind,
  type RecordKind as Kind,
} from '../../lib/format/record.js';
import { propertyRuns } from '../helpers/temp-dir.js';

const TAG = 0x1234abcd;

interface Fields {
  magic: number;
  kind: number;
  flags: number;
  reserved1: number;
  seqLo: number;
  seqHi: number;
  blockLo: number;
  blockHi: number;
  count: number;
  payloadLength: number;
  payloadCrc: number;
  tag: number;
  reserved2: number;
}

const valid: Fields = {
  magic: 0x43524444,
  kind: RecordKind.DATA,
  flags: 0,
  reserved1: 0,
  seqLo: 7,
  seqHi: 0,
  blockLo: 42,
  blockHi: 0,
  count: 3,
  payloadLength: 3 * 4096,
  payloadCrc: 0xdeadbeef,
  tag: TAG,
  reserved2: 0,
};

/** A 48-byte header laid out by hand from the documented table, with a correct CRC. */
function header(patch: Partial<Fields> = {}, crcPatch?: number): Buffer {
  const f = { ...valid, ...patch };
  const b = Buffer.alloc(RECORD_HEADER_SIZE);
  b.writeUInt32LE(f.magic, 0);
  b[4] = f.kind;
  b[5] = f.flags;
  b.writeUInt16LE(f.reserved1, 6);
  b.writeUInt32LE(f.seqLo, 8);
  b.writeUInt32LE(f.seqHi, 12);
  b.writeUInt32LE(f.blockLo, 16);
  b.writeUInt32LE(f.blockHi, 20);
  b.writeUInt32LE(f.count, 24);
  b.writeUInt32LE(f.payloadLength, 28);
  b.writeUInt32LE(f.payloadCrc, 32);
  b.writeUInt32LE(f.tag, 36);
  b.writeUInt32LE(f.reserved2, 40);
  b.writeUInt32LE(crcPatch ?? crc32(b.subarray(0, 44)), 44);
  return b;
}

describe('record header round trip', () => {
  it('decodes what it encodes, at any position in a buffer', () => {
    fc.assert(
      fc.property(
        fc.constantFrom<Kind>(RecordKind.DATA, RecordKind.ZERO, RecordKind.REF, RecordKind.BLOB, RecordKind.MAPSEG),
        fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }),
        fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }),
        fc.integer({ min: 1, max: 0xffffffff }),
        fc.integer({ min: 0, max: MAX_RECORD_PAYLOAD }),
        fc.integer({ min: 0, max: 0xffffffff }),
        fc.integer({ min: 0, max: 0xffffffff }),
        fc.nat(100),
        (kind, seq, block, count, payloadLength, payloadCrc, tag, at) => {
          const b = Buffer.alloc(at + RECORD_HEADER_SIZE + 10);
          encodeRecordHeader(b, at, kind, seq, block, count, payloadLength, payloadCrc, tag);
          expect(decodeRecordHeader(b, at, tag)).toEqual({ kind, seq, block, count, payloadLength, payloadCrc });
          // Another layer's tag never reads it.
          expect(decodeRecordHeader(b, at, (tag + 1) >>> 0)).toBeUndefined();
        },
      ),
      { numRuns: propertyRuns(300) },
    );
  });

  it('matches the hand-built layout byte for byte', () => {
    const b = Buffer.alloc(RECORD_HEADER_SIZE);
    encodeRecordHeader(b, 0, RecordKind.DATA, 7, 42, 3, 3 * 4096, 0xdeadbeef, TAG);
    expect(b.equals(header())).toBe(true);
  });

  it('stores 64-bit fields little-endian across both words', () => {
    const b = Buffer.alloc(RECORD_HEADER_SIZE);
    const seq = 2 ** 40 + 5;
    encodeRecordHeader(b, 0, RecordKind.ZERO, seq, 2 ** 33 + 1, 1, 0, 0, TAG);
    expect(b.readUInt32LE(8)).toBe(5);
    expect(b.readUInt32LE(12)).toBe(2 ** 8);
    expect(b.readUInt32LE(16)).toBe(1);
    expect(b.readUInt32LE(20)).toBe(2);
  });

  it('refuses to encode a payload over the limit', () => {
    const b = Buffer.alloc(RECORD_HEADER_SIZE);
    try {
      encodeRecordHeader(b, 0, RecordKind.DATA, 1, 0, 1, MAX_RECORD_PAYLOAD + 1, 0, TAG);
      expect.unreachable();
    } catch (err) {
      expect(isDeltaDiskError(err, 'LIMIT_EXCEEDED')).toBe(true);
    }
  });
});

describe('record header validation: anything not intact ends the log', () => {
  const decode = (b: Buffer, at = 0) => decodeRecordHeader(b, at, TAG);

  it('accepts the valid base case', () => {
    expect(decode(header())).toBeDefined();
  });

  it('fewer than 48 bytes', () => {
    expect(decode(header().subarray(0, 47))).toBeUndefined();
    expect(decode(Buffer.concat([Buffer.alloc(10), header()]), 11)).toBeUndefined();
  });

  it('wrong magic', () => {
    expect(decode(header({ magic: 0x43524445 }))).toBeUndefined();
  });

  it('header CRC mismatch', () => {
    const b = header();
    expect(decode(header({}, (b.readUInt32LE(44) ^ 1) >>> 0))).toBeUndefined();
    const flipped = Buffer.from(b);
    flipped[30] = flipped[30]! ^ 0x10;
    expect(decode(flipped)).toBeUndefined();
  });

  it('a record of another layer (wrong tag)', () => {
    expect(decode(header({ tag: TAG ^ 1 }))).toBeUndefined();
  });

  it('an unknown kind', () => {
    expect(decode(header({ kind: 0 }))).toBeUndefined();
    expect(decode(header({ kind: 7 }))).toBeUndefined();
    expect(decode(header({ kind: 255 }))).toBeUndefined();
  });

  it('non-zero flags', () => {
    expect(decode(header({ flags: 1 }))).toBeUndefined();
  });

  it('non-zero reserved bytes', () => {
    expect(decode(header({ reserved1: 1 }))).toBeUndefined();
    expect(decode(header({ reserved2: 0x80000000 }))).toBeUndefined();
  });

  it('a sequence number beyond the safe integers', () => {
    expect(decode(header({ seqHi: 2 ** 21 }))).toBeUndefined();
    expect(decode(header({ seqHi: 2 ** 21 - 1, seqLo: 0xffffffff }))).toBeDefined();
  });

  it('a block index beyond the safe integers', () => {
    expect(decode(header({ blockHi: 0xffffffff }))).toBeUndefined();
  });

  it('a payload length over the limit', () => {
    expect(decode(header({ payloadLength: MAX_RECORD_PAYLOAD + 1 }))).toBeUndefined();
    expect(decode(header({ payloadLength: MAX_RECORD_PAYLOAD }))).toBeDefined();
  });

  it('a count of zero', () => {
    expect(decode(header({ count: 0 }))).toBeUndefined();
  });
});

describe('record kinds and layer tags', () => {
  it('knows exactly the six kinds', () => {
    expect([0, 1, 2, 3, 4, 5, 6, 7].map(isRecordKind)).toEqual([false, true, true, true, true, true, true, false]);
  });

  it('a PAD record fills the gap to the next 4 KiB boundary, and decodes as one', () => {
    for (const pos of [8192 + 48, 8192 + 4000, 8192 + 4096 - 47, 8192 + 4095]) {
      const n = paddingAt(pos);
      expect((pos + n) % 4096, String(pos)).toBe(0);
      expect(n).toBeGreaterThanOrEqual(RECORD_HEADER_SIZE);
      const bytes = Buffer.concat(encodePadRecord(n, 9, 0x1234abcd));
      expect(bytes.length).toBe(n);
      expect(decodeRecordHeader(bytes, 0, 0x1234abcd)).toMatchObject({ kind: RecordKind.PAD, seq: 9, block: 0, count: 1, payloadLength: n - RECORD_HEADER_SIZE });
      expect(bytes.subarray(RECORD_HEADER_SIZE).every((b) => b === 0)).toBe(true);
    }
  });

  it('a tag is the first 4 bytes of the layer id', () => {
    expect(layerTag('0123abcd-0000-4000-8000-000000000000')).toBe(0x0123abcd);
    expect(layerTag('ffffffff-0000-4000-8000-000000000000')).toBe(0xffffffff);
    // Dashes are not digits: an id with an early dash still yields 8 hex digits.
    expect(layerTag('0123-abcd-ef')).toBe(0x0123abcd);
  });
});
