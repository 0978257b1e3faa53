/**
 * Map segments (docs/FORMAT.md, "Map segments"): a round trip for any valid
 * segment, one hand-crafted payload per validation rule, and the entry cap.
 */
import { encode } from '@msgpack/msgpack';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { MAX_SEGMENT_ENTRIES } from '../../lib/format/limits.js';
import { decodeMapSegment, encodeMapSegment, HASH_SIZE, type MapSegment } from '../../lib/format/map-segment.js';
import { RecordKind } from '../../lib/format/record.js';
import { codeOfSync } from '../helpers/errors.js';
import { propertyRuns } from '../helpers/temp-dir.js';

const BS = 4096;
const MAX_BLOCKS = 1000;

interface Entry {
  kind: number;
  block: number;
  offset: number;
  crc: number;
  hash?: Uint8Array;
}

function columns(entries: readonly Entry[]) {
  const n = entries.length;
  const kinds = new Uint8Array(n);
  const blocks = new Float64Array(n);
  const offsets = new Float64Array(n);
  const crcs = new Uint32Array(n);
  const hashes = new Uint8Array(n * HASH_SIZE);
  entries.forEach((e, i) => {
    kinds[i] = e.kind;
    blocks[i] = e.block;
    offsets[i] = e.offset;
    crcs[i] = e.crc;
    if (e.hash) hashes.set(e.hash, i * HASH_SIZE);
  });
  return { count: n, kinds, blocks, offsets, crcs, hashes };
}

const bytes = (a: ArrayBufferView) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

/** A payload built by hand as docs/FORMAT.md describes it, with `patch` applied last. */
function payload(entries: readonly Entry[], patch: Record<string, unknown> = {}): Uint8Array {
  const c = columns(entries);
  return encode({
    v: 1,
    prev: 0,
    full: false,
    first: 8192,
    end: 8192 + 10 * BS,
    firstSeq: 1,
    count: c.count,
    kinds: bytes(c.kinds),
    blocks: bytes(c.blocks),
    offsets: bytes(c.offsets),
    crcs: bytes(c.crcs),
    hashes: c.hashes,
    ...patch,
  });
}

const twoEntries: Entry[] = [
  { kind: RecordKind.DATA, block: 3, offset: 8192 + 48, crc: 1 },
  { kind: RecordKind.ZERO, block: 4, offset: 8192 + 48 + BS, crc: 0 },
];


const decodeCode = (p: Uint8Array, offset?: number) => codeOfSync(() => decodeMapSegment(p, MAX_BLOCKS, BS, '/x.delta', offset));

/** Valid segments: entries laid out back to back as records would be. */
const segmentArb: fc.Arbitrary<{ seg: MapSegment; at: number }> = fc
  .record({
    first: fc.integer({ min: 8192, max: 2 ** 40 }),
    prevGap: fc.option(fc.integer({ min: 1, max: 10_000 }), { nil: undefined }),
    full: fc.boolean(),
    firstSeq: fc.integer({ min: 1, max: 2 ** 40 }),
    entries: fc.array(
      fc.record({
        kind: fc.constantFrom(RecordKind.DATA, RecordKind.ZERO, RecordKind.REF, RecordKind.BLOB),
        block: fc.nat(MAX_BLOCKS - 1),
        crc: fc.integer({ min: 0, max: 0xffffffff }),
        hash: fc.uint8Array({ minLength: HASH_SIZE, maxLength: HASH_SIZE }),
        gap: fc.nat(100),
      }),
      { maxLength: 40 },
    ),
    tail: fc.nat(1000),
  })
  .map((r) => {
    let pos = r.first;
    const entries: Entry[] = r.entries.map((e) => {
      pos += e.gap;
      const offset = pos;
      pos += e.kind === RecordKind.DATA || e.kind === RecordKind.BLOB ? BS : 48;
      return { kind: e.kind, block: e.kind === RecordKind.BLOB ? 0 : e.block, offset, crc: e.crc, hash: e.hash };
    });
    const end = pos + 1 + r.tail;
    const prev = r.prevGap === undefined ? 0 : Math.max(8192, r.first - r.prevGap);
    const seg: MapSegment = { prev: prev >= r.first ? 0 : prev, full: r.full, first: r.first, end, firstSeq: r.firstSeq, ...columns(entries) };
    return { seg, at: end };
  });

describe('map segment round trip', () => {
  it('decodes what it encodes', () => {
    fc.assert(
      fc.property(segmentArb, ({ seg, at }) => {
        const back = decodeMapSegment(encodeMapSegment(seg), MAX_BLOCKS, BS, undefined, at);
        expect({ ...back, kinds: [...back.kinds], blocks: [...back.blocks], offsets: [...back.offsets], crcs: [...back.crcs], hashes: [...back.hashes] }).toEqual({
          ...seg,
          kinds: [...seg.kinds],
          blocks: [...seg.blocks],
          offsets: [...seg.offsets],
          crcs: [...seg.crcs],
          hashes: [...seg.hashes],
        });
      }),
      { numRuns: propertyRuns(200) },
    );
  });

  it('encodes only the first `count` rows of longer columns', () => {
    const c = columns([...twoEntries, { kind: RecordKind.DATA, block: 9, offset: 99_999, crc: 5 }]);
    const seg: MapSegment = { prev: 0, full: false, first: 8192, end: 8192 + 10 * BS, firstSeq: 1, ...c, count: 2 };
    const back = decodeMapSegment(encodeMapSegment(seg), MAX_BLOCKS, BS);
    expect(back.count).toBe(2);
    expect([...back.blocks]).toEqual([3, 4]);
  });

  it('decoded columns are aligned private copies', () => {
    const p = payload(twoEntries);
    const back = decodeMapSegment(p, MAX_BLOCKS, BS);
    expect(back.blocks.byteOffset % 8).toBe(0);
    p.fill(0);
    expect([...back.blocks]).toEqual([3, 4]);
  });
});

describe('map segment limits', () => {
  it('refuses to encode more than 65536 entries', () => {
    const n = MAX_SEGMENT_ENTRIES + 1;
    const seg: MapSegment = {
      prev: 0,
      full: false,
      first: 8192,
      end: 8193,
      firstSeq: 1,
      count: n,
      kinds: new Uint8Array(n),
      blocks: new Float64Array(n),
      offsets: new Float64Array(n),
      crcs: new Uint32Array(n),
      hashes: new Uint8Array(n * HASH_SIZE),
    };
    expect(codeOfSync(() => encodeMapSegment(seg))).toBe('LIMIT_EXCEEDED');
  });

  it('refuses to decode a count over 65536 before looking at the columns', () => {
    expect(decodeCode(payload([], { count: MAX_SEGMENT_ENTRIES + 1 }))).toBe('LIMIT_EXCEEDED');
  });

  it('a column larger than any segment can hold is refused by the decoder', () => {
    expect(decodeCode(payload([], { hashes: new Uint8Array(MAX_SEGMENT_ENTRIES * HASH_SIZE + 1) }))).toBe('CHAIN_CORRUPT');
  });
});

describe('map segment validation: one rule each', () => {
  it('accepts the valid base case', () => {
    expect(decodeCode(payload(twoEntries), 8192 + 10 * BS)).toBe('ok');
  });

  it('payload that is not msgpack', () => {
    expect(decodeCode(new Uint8Array([0xc1]))).toBe('CHAIN_CORRUPT');
    expect(decodeCode(new Uint8Array(0))).toBe('CHAIN_CORRUPT');
  });

  it('payload that is not a map', () => {
    expect(decodeCode(encode(7))).toBe('CHAIN_CORRUPT');
    expect(decodeCode(encode(null))).toBe('CHAIN_CORRUPT');
    expect(decodeCode(encode([]))).toBe('CHAIN_CORRUPT');
  });

  it('another segment version', () => {
    expect(decodeCode(payload(twoEntries, { v: 2 }))).toBe('UNSUPPORTED_VERSION');
  });

  it('a missing version is damage, not a newer format', () => {
    expect(decodeCode(payload(twoEntries, { v: undefined }))).toBe('CHAIN_CORRUPT');
  });

  for (const field of ['prev', 'first', 'end', 'firstSeq', 'count']) {
    it(`an invalid ${field}`, () => {
      expect(decodeCode(payload(twoEntries, { [field]: -1 }))).toBe('CHAIN_CORRUPT');
      expect(decodeCode(payload(twoEntries, { [field]: 1.5 }))).toBe('CHAIN_CORRUPT');
      expect(decodeCode(payload(twoEntries, { [field]: '1' }))).toBe('CHAIN_CORRUPT');
    });
  }

  it('a full flag that is not a boolean', () => {
    expect(decodeCode(payload(twoEntries, { full: 0 }))).toBe('CHAIN_CORRUPT');
  });

  it('a range that ends before it starts', () => {
    expect(decodeCode(payload([], { first: 9000, end: 8999 }))).toBe('CHAIN_CORRUPT');
  });

  it('a range that runs past the segment record itself', () => {
    expect(decodeCode(payload(twoEntries), 8192 + 10 * BS - 1)).toBe('CHAIN_CORRUPT');
  });

  it('a previous segment that is not before the range (unless full)', () => {
    expect(decodeCode(payload(twoEntries, { prev: 8192 }))).toBe('CHAIN_CORRUPT');
    expect(decodeCode(payload(twoEntries, { prev: 8192, full: true }))).toBe('ok');
    expect(decodeCode(payload(twoEntries, { prev: 8191 }))).toBe('ok');
  });

  for (const col of ['kinds', 'blocks', 'offsets', 'crcs', 'hashes']) {
    it(`a ${col} column of the wrong length or type`, () => {
      const c = columns(twoEntries);
      const good: Record<string, Uint8Array> = {
        kinds: bytes(c.kinds),
        blocks: bytes(c.blocks),
        offsets: bytes(c.offsets),
        crcs: bytes(c.crcs),
        hashes: c.hashes,
      };
      expect(decodeCode(payload(twoEntries, { [col]: good[col]!.subarray(1) }))).toBe('CHAIN_CORRUPT');
      expect(decodeCode(payload(twoEntries, { [col]: 'text' }))).toBe('CHAIN_CORRUPT');
    });
  }

  it('an entry of a kind a segment cannot list', () => {
    for (const kind of [0, RecordKind.MAPSEG, 6, 255]) {
      expect(decodeCode(payload([{ ...twoEntries[0]!, kind }])), String(kind)).toBe('CHAIN_CORRUPT');
    }
  });

  it('an entry naming a block outside the disk', () => {
    for (const block of [MAX_BLOCKS, -1, 1.5, Number.NaN, Number.POSITIVE_INFINITY]) {
      expect(decodeCode(payload([{ ...twoEntries[0]!, block }])), String(block)).toBe('CHAIN_CORRUPT');
    }
    expect(decodeCode(payload([{ ...twoEntries[0]!, block: MAX_BLOCKS - 1 }]))).toBe('ok');
  });

  it('an entry offset outside the range', () => {
    expect(decodeCode(payload([{ ...twoEntries[1]!, offset: 8191 }]))).toBe('CHAIN_CORRUPT');
    expect(decodeCode(payload([{ ...twoEntries[1]!, offset: 8192 + 10 * BS }]))).toBe('CHAIN_CORRUPT');
    expect(decodeCode(payload([{ ...twoEntries[1]!, offset: Number.NaN }]))).toBe('CHAIN_CORRUPT');
  });

  it('entry offsets out of order', () => {
    expect(decodeCode(payload([twoEntries[1]!, { ...twoEntries[0]!, block: 5 }]))).toBe('CHAIN_CORRUPT');
  });

  it('ZERO and REF entries of one record share its offset', () => {
    const at = 8192;
    const entries: Entry[] = [0, 1, 2].map((i) => ({ kind: RecordKind.ZERO, block: i, offset: at, crc: 0 }));
    expect(decodeCode(payload(entries))).toBe('ok');
  });

  it('block data that overlaps other data', () => {
    const a: Entry = { kind: RecordKind.DATA, block: 1, offset: 8192 + 48, crc: 0 };
    expect(decodeCode(payload([a, { ...a, block: 2, offset: 8192 + 48 + BS - 1 }]))).toBe('CHAIN_CORRUPT');
    expect(decodeCode(payload([a, { ...a, kind: RecordKind.BLOB, block: 0, offset: 8192 + 48 + BS }]))).toBe('ok');
  });

  it('block data that runs past the range', () => {
    expect(decodeCode(payload([{ kind: RecordKind.DATA, block: 1, offset: 8192 + 10 * BS - BS + 1, crc: 0 }]))).toBe('CHAIN_CORRUPT');
  });
});
