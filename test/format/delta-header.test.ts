/**
 * The delta header slot (docs/FORMAT.md, "Header slot"): a round trip for every
 * valid header, and one hand-crafted slot per validation rule. Slots are built
 * here from the documented byte layout, not with the encoder under test, so a
 * layout change that the docs do not follow is caught.
 */
import { crc32 } from 'node:zlib';
import { encode } from '@msgpack/msgpack';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { isDeltaDiskError } from '../../lib/errors.js';
import {
  decodeDeltaHeader,
  DELTA_FORMAT_VERSION,
  encodeDeltaHeader,
  MAX_HEADER_PAYLOAD,
  type DeltaHeader,
} from '../../lib/format/delta-header.js';
import { HEADER_SLOT_SIZE, MAX_VIRTUAL_SIZE } from '../../lib/format/limits.js';
import { codeOfSync } from '../helpers/errors.js';
import { propertyRuns } from '../helpers/temp-dir.js';

const ID = '0123abcd-0000-4000-8000-00000000000a';
const LAYER = '9876fedc-0000-4000-8000-00000000000b';

function validPayload(): Record<string, unknown> {
  return {
    diskId: ID,
    layerId: LAYER,
    parentId: null,
    parentFile: null,
    blockSize: 65536,
    virtualSize: 1 << 30,
    generation: 1,
    sealed: false,
    snapshot: null,
    logEnd: 8192,
    nextSeq: 1,
    lastSegment: 0,
    created: '2024-01-01T00:00:00.000Z',
  };
}

/** A slot laid out by hand: magic, version, flags, length, CRC over bytes 0..15 + payload. */
function slot(payload: Uint8Array, o: { version?: number; flags?: number; length?: number; size?: number } = {}): Buffer {
  const b = Buffer.alloc(o.size ?? HEADER_SLOT_SIZE);
  Buffer.from('DDLT\r\n\x1a\n', 'latin1').copy(b, 0);
  b.writeUInt16LE(o.version ?? 1, 8);
  b.writeUInt16LE(o.flags ?? 0, 10);
  b.writeUInt32LE(o.length ?? payload.length, 12);
  Buffer.from(payload).copy(b, 20, 0, Math.max(0, Math.min(payload.length, b.length - 20)));
  b.writeUInt32LE(crc32(payload, crc32(b.subarray(0, 16))), 16);
  return b;
}

function slotOf(fields: Record<string, unknown>): Buffer {
  return slot(encode(fields));
}


const idArb = fc.uuid().map((u) => u.toLowerCase());
const text = (max: number) => fc.string({ maxLength: max, unit: 'grapheme-ascii' });
const headerArb: fc.Arbitrary<DeltaHeader> = fc
  .record({
    diskId: idArb,
    layerId: idArb,
    parentId: fc.option(idArb, { nil: null }),
    parentFile: fc.option(text(64), { nil: null }),
    base: fc.option(
      fc.record({ file: text(200).filter((f) => f.length > 0), size: fc.integer({ min: 0, max: MAX_VIRTUAL_SIZE }), fingerprint: fc.stringMatching(/^[0-9a-f]{64}$/) }),
      { nil: null },
    ),
    blockSize: fc.integer({ min: 12, max: 20 }).map((e) => 2 ** e),
    virtualSize: fc.integer({ min: 1, max: MAX_VIRTUAL_SIZE }),
    generation: fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }),
    sealed: fc.boolean(),
    snapshot: fc.option(fc.record({ id: idArb, name: text(64), created: text(30) }), { nil: null }),
    logEnd: fc.integer({ min: 8192, max: Number.MAX_SAFE_INTEGER }),
    nextSeq: fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }),
    created: text(30),
  })
  .chain((h) =>
    (h.logEnd > 8192 ? fc.oneof(fc.constant(0), fc.integer({ min: 8192, max: h.logEnd - 1 })) : fc.constant(0)).map((lastSegment) => ({ ...h, lastSegment })),
  )
  .filter((h) => h.parentId !== h.layerId);

describe('delta header round trip', () => {
  it('decodes what it encodes, for any valid header', () => {
    fc.assert(
      fc.property(headerArb, (h) => {
        const bytes = encodeDeltaHeader(h);
        expect(bytes.length).toBe(HEADER_SLOT_SIZE);
        expect(decodeDeltaHeader(bytes)).toEqual(h);
      }),
      { numRuns: propertyRuns(200) },
    );
  });

  it('lays the slot out as docs/FORMAT.md says', () => {
    const h = decodeDeltaHeader(slotOf(validPayload()))!;
    const bytes = encodeDeltaHeader(h);
    expect(bytes.subarray(0, 8).toString('latin1')).toBe('DDLT\r\n\x1a\n');
    expect(bytes.readUInt16LE(8)).toBe(DELTA_FORMAT_VERSION);
    expect(bytes.readUInt16LE(10)).toBe(0);
    const len = bytes.readUInt32LE(12);
    expect(bytes.readUInt32LE(16)).toBe(crc32(bytes.subarray(20, 20 + len), crc32(bytes.subarray(0, 16))));
    // The rest of the slot is zero.
    expect(bytes.subarray(20 + len).every((b) => b === 0)).toBe(true);
  });

  it('refuses to encode a header that does not fit its slot', () => {
    const h = decodeDeltaHeader(slotOf(validPayload()))!;
    const big = { ...h, snapshot: { id: ID, name: 'x'.repeat(MAX_HEADER_PAYLOAD), created: 'now' } };
    expect(codeOfSync(() => encodeDeltaHeader(big))).toBe('LIMIT_EXCEEDED');
  });
});

describe('delta header slots that are not intact read as absent (the other slot may be good)', () => {
  const good = slotOf(validPayload());

  it('an all-zero slot', () => {
    expect(decodeDeltaHeader(Buffer.alloc(HEADER_SLOT_SIZE))).toBeUndefined();
  });

  it('a slot shorter than the fixed part', () => {
    expect(decodeDeltaHeader(good.subarray(0, 19))).toBeUndefined();
  });

  it('a wrong magic', () => {
    const b = Buffer.from(good);
    b[0] = 0x58;
    expect(decodeDeltaHeader(b)).toBeUndefined();
  });

  it('a payload length over the slot capacity', () => {
    expect(decodeDeltaHeader(slot(encode(validPayload()), { length: MAX_HEADER_PAYLOAD + 1 }))).toBeUndefined();
  });

  it('a payload length running past the bytes given', () => {
    const payload = encode(validPayload());
    expect(decodeDeltaHeader(slot(payload, { size: 20 + payload.length - 1, length: payload.length }))).toBeUndefined();
  });

  it('a CRC that does not hold (payload changed)', () => {
    const b = Buffer.from(good);
    b[25] = b[25]! ^ 0x01;
    expect(decodeDeltaHeader(b)).toBeUndefined();
  });

  it('a CRC that does not hold (fixed part changed)', () => {
    const b = Buffer.from(good);
    b[9] = b[9]! ^ 0x80; // version high byte: covered by the CRC, so not a version refusal
    expect(decodeDeltaHeader(b)).toBeUndefined();
  });

  it('bytes after the payload do not matter', () => {
    const b = Buffer.from(good);
    b[HEADER_SLOT_SIZE - 1] = 0xff;
    expect(decodeDeltaHeader(b)).toBeDefined();
  });
});

describe('delta header version refusal', () => {
  it('an intact slot of another format version is UNSUPPORTED_VERSION', () => {
    expect(codeOfSync(() => decodeDeltaHeader(slot(encode(validPayload()), { version: 2 })))).toBe('UNSUPPORTED_VERSION');
    expect(codeOfSync(() => decodeDeltaHeader(slot(encode(validPayload()), { version: 0 })))).toBe('UNSUPPORTED_VERSION');
  });

  it('unknown feature flags are UNSUPPORTED_VERSION', () => {
    expect(codeOfSync(() => decodeDeltaHeader(slot(encode(validPayload()), { flags: 1 })))).toBe('UNSUPPORTED_VERSION');
  });
});

describe('delta header validation: an intact slot with impossible content is CHAIN_CORRUPT', () => {
  const corrupt = (patch: Record<string, unknown>): string => codeOfSync(() => decodeDeltaHeader(slotOf({ ...validPayload(), ...patch })));

  it('accepts the valid base case', () => {
    expect(corrupt({})).toBe('ok');
  });

  it('payload that is not msgpack', () => {
    expect(codeOfSync(() => decodeDeltaHeader(slot(Buffer.from([0xc1]))))).toBe('CHAIN_CORRUPT');
  });

  it('payload that is not a map', () => {
    expect(codeOfSync(() => decodeDeltaHeader(slot(encode([1, 2, 3]))))).toBe('CHAIN_CORRUPT');
    expect(codeOfSync(() => decodeDeltaHeader(slot(encode(42))))).toBe('CHAIN_CORRUPT');
    expect(codeOfSync(() => decodeDeltaHeader(slot(encode(null))))).toBe('CHAIN_CORRUPT');
  });

  it('binary or extension values are refused by the decoder limits', () => {
    expect(corrupt({ created: new Uint8Array(4) })).toBe('CHAIN_CORRUPT');
  });

  it('an invalid disk id', () => {
    expect(corrupt({ diskId: 'ABCDEF01-0000' })).toBe('CHAIN_CORRUPT'); // upper case
    expect(corrupt({ diskId: 'abc' })).toBe('CHAIN_CORRUPT'); // too short
    expect(corrupt({ diskId: 12345678 })).toBe('CHAIN_CORRUPT');
  });

  it('an invalid layer id', () => {
    expect(corrupt({ layerId: '../../../etc' })).toBe('CHAIN_CORRUPT');
  });

  it('an invalid parent id', () => {
    expect(corrupt({ parentId: 'not an id' })).toBe('CHAIN_CORRUPT');
    expect(corrupt({ parentId: 7 })).toBe('CHAIN_CORRUPT');
  });

  it('a layer that names itself as its parent', () => {
    expect(corrupt({ parentId: LAYER })).toBe('CHAIN_CORRUPT');
  });

  it('an invalid parent file', () => {
    expect(corrupt({ parentFile: 'x'.repeat(256) })).toBe('CHAIN_CORRUPT');
    expect(corrupt({ parentFile: 1 })).toBe('CHAIN_CORRUPT');
  });

  it('an invalid block size', () => {
    for (const blockSize of [0, 2048, 4097, 3 * 4096, 2 * 1024 * 1024, -4096, 4096.5, '4096']) {
      expect(corrupt({ blockSize }), String(blockSize)).toBe('CHAIN_CORRUPT');
    }
  });

  it('an invalid virtual size', () => {
    for (const virtualSize of [0, -1, MAX_VIRTUAL_SIZE + 1, 1.5, '1']) {
      expect(corrupt({ virtualSize }), String(virtualSize)).toBe('CHAIN_CORRUPT');
    }
    expect(corrupt({ virtualSize: MAX_VIRTUAL_SIZE })).toBe('ok');
  });

  it('an invalid generation', () => {
    expect(corrupt({ generation: 0 })).toBe('CHAIN_CORRUPT');
    expect(corrupt({ generation: -1 })).toBe('CHAIN_CORRUPT');
  });

  it('a sealed flag that is not a boolean', () => {
    expect(corrupt({ sealed: 1 })).toBe('CHAIN_CORRUPT');
  });

  it('an invalid log position', () => {
    expect(corrupt({ logEnd: -1 })).toBe('CHAIN_CORRUPT');
    expect(corrupt({ nextSeq: 0 })).toBe('CHAIN_CORRUPT');
    expect(corrupt({ lastSegment: 1.5 })).toBe('CHAIN_CORRUPT');
    expect(corrupt({ logEnd: 2 ** 60 })).toBe('CHAIN_CORRUPT');
  });

  it('a map segment pointer at or past the log end', () => {
    expect(corrupt({ logEnd: 9000, lastSegment: 9000 })).toBe('CHAIN_CORRUPT');
    expect(corrupt({ logEnd: 9000, lastSegment: 9100 })).toBe('CHAIN_CORRUPT');
    expect(corrupt({ logEnd: 9000, lastSegment: 8192 })).toBe('ok');
  });

  it('an invalid creation time', () => {
    expect(corrupt({ created: 'x'.repeat(65) })).toBe('CHAIN_CORRUPT');
    expect(corrupt({ created: null })).toBe('CHAIN_CORRUPT');
  });

  it('an invalid snapshot tag', () => {
    const tag = { id: ID, name: 'snap', created: 'now' };
    expect(corrupt({ snapshot: tag })).toBe('ok');
    expect(corrupt({ snapshot: 'snap' })).toBe('CHAIN_CORRUPT');
    expect(corrupt({ snapshot: { ...tag, id: 'nope' } })).toBe('CHAIN_CORRUPT');
    expect(corrupt({ snapshot: { ...tag, name: 'n'.repeat(256) } })).toBe('CHAIN_CORRUPT');
    expect(corrupt({ snapshot: { ...tag, created: 5 } })).toBe('CHAIN_CORRUPT');
    expect(corrupt({ snapshot: { ...tag, created: undefined } })).toBe('CHAIN_CORRUPT');
  });

  it('missing fields', () => {
    const p = validPayload();
    delete p.sealed;
    expect(codeOfSync(() => decodeDeltaHeader(slotOf(p)))).toBe('CHAIN_CORRUPT');
  });

  it('names the file in the error', () => {
    try {
      decodeDeltaHeader(slotOf({ ...validPayload(), generation: 0 }), '/d/x.delta');
      expect.unreachable();
    } catch (err) {
      expect(isDeltaDiskError(err, 'CHAIN_CORRUPT') && err.path).toBe('/d/x.delta');
    }
  });
});
