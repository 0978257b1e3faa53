/**
 * HashIndex: content → stored copy. Keys are 32-bit prefixes, so two different
 * hashes can share a key; a hit must be confirmed on the full hash, or dedup would
 * make two different blocks share storage.
 */
import { createHash, randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { HashIndex } from '../../lib/chain/hash-index.js';
import { RecordTable } from '../../lib/chain/record-table.js';
import { RecordKind } from '../../lib/format/record.js';

function tableWith(hashes: Uint8Array[]): RecordTable {
  const t = new RecordTable();
  for (const h of hashes) t.push(RecordKind.DATA, 0, 0, 0, h);
  return t;
}

/** Two different hashes sharing their first 48 bits (so their 32-bit keys too). */
function collidingPair(): [Buffer, Buffer] {
  const a = createHash('sha256').update('a').digest();
  const b = Buffer.from(a);
  b[31] = b[31]! ^ 0xff;
  b[6] = b[6]! ^ 0x01; // the first byte after the prefix
  return [a, b];
}

describe('HashIndex', () => {
  it('finds what was added, in the slot and row it was added at', () => {
    const hashes = Array.from({ length: 50 }, () => randomBytes(32));
    const idx = new HashIndex();
    idx.setTable(1, tableWith(hashes.slice(0, 25)));
    idx.setTable(2, tableWith(hashes.slice(25)));
    hashes.forEach((h, i) => idx.add(i < 25 ? 1 : 2, i % 25, h));
    hashes.forEach((h, i) => expect(idx.find(h)).toEqual({ slot: i < 25 ? 1 : 2, row: i % 25 }));
    expect(idx.find(randomBytes(32))).toBeUndefined();
  });

  it('tells apart two hashes with the same prefix', () => {
    const [a, b] = collidingPair();
    expect(a.subarray(0, 6).equals(b.subarray(0, 6))).toBe(true);
    const idx = new HashIndex();
    idx.setTable(1, tableWith([a, b]));
    idx.add(1, 0, a);
    // Only a is stored: b shares the key but must not be "found" as a.
    expect(idx.find(b)).toBeUndefined();
    idx.add(1, 1, b);
    expect(idx.find(a)).toEqual({ slot: 1, row: 0 });
    expect(idx.find(b)).toEqual({ slot: 1, row: 1 });
    expect(idx.size).toBe(2); // two copies under one key
  });

  it('a third hash with the shared prefix is not found either', () => {
    const [a, b] = collidingPair();
    const c = Buffer.from(a);
    c[20] = c[20]! ^ 0x55;
    const idx = new HashIndex();
    idx.setTable(3, tableWith([a, b]));
    idx.add(3, 0, a);
    idx.add(3, 1, b);
    expect(idx.find(c)).toBeUndefined();
  });

  it('keeps the first copy of a content; adding it again changes nothing', () => {
    const h = randomBytes(32);
    const idx = new HashIndex();
    idx.setTable(1, tableWith([h]));
    idx.setTable(2, tableWith([h]));
    idx.add(1, 0, h);
    idx.add(2, 0, h);
    expect(idx.find(h)).toEqual({ slot: 1, row: 0 });
  });

  it('dropFrom forgets entries of the cut-off slots, and only those', () => {
    const [a, b] = collidingPair();
    const c = randomBytes(32);
    const idx = new HashIndex();
    idx.setTable(1, tableWith([a]));
    idx.setTable(2, tableWith([b, c]));
    idx.add(1, 0, a);
    idx.add(2, 0, b);
    idx.add(2, 1, c);
    idx.dropFrom(2);
    expect(idx.find(a)).toEqual({ slot: 1, row: 0 });
    expect(idx.find(b)).toBeUndefined();
    expect(idx.find(c)).toBeUndefined();
    // A new layer in slot 2 can register again.
    idx.setTable(2, tableWith([c]));
    idx.add(2, 0, c);
    expect(idx.find(c)).toEqual({ slot: 2, row: 0 });
  });

  it('slots and rows up to large values round-trip through the packed key', () => {
    const h = randomBytes(32);
    const t = new RecordTable();
    const row = 100_000;
    for (let i = 0; i < row; i++) t.push(RecordKind.ZERO, 0, 0, 0, undefined);
    t.push(RecordKind.DATA, 0, 0, 0, h);
    const idx = new HashIndex();
    idx.setTable(512, t);
    idx.add(512, row, h);
    expect(idx.find(h)).toEqual({ slot: 512, row });
  });

  it('agrees with a plain map through growth, shared prefixes and cut-backs (model-based)', () => {
    // Hashes drawn from a small set of 4-byte prefixes, so probe sequences collide often.
    const hashArb = fc.tuple(fc.integer({ min: 0, max: 7 }), fc.uint8Array({ minLength: 28, maxLength: 28 })).map(([p, rest]) => {
      const h = new Uint8Array(32);
      h.set([0xab, 0xcd, 0xef, p]);
      h.set(rest, 4);
      return h;
    });
    const op = fc.oneof(
      { weight: 8, arbitrary: fc.record({ kind: fc.constant('add' as const), slot: fc.integer({ min: 1, max: 4 }), hash: hashArb }) },
      { weight: 1, arbitrary: fc.record({ kind: fc.constant('drop' as const), slot: fc.integer({ min: 1, max: 4 }) }) },
    );
    fc.assert(
      fc.property(fc.array(op, { maxLength: 3000 }), (ops) => {
        const tables = [1, 2, 3, 4].map(() => new RecordTable());
        const idx = new HashIndex();
        tables.forEach((t, i) => idx.setTable(i + 1, t));
        const model = new Map<string, { slot: number; row: number }>();
        const seen: Uint8Array[] = [];
        for (const o of ops) {
          if (o.kind === 'add') {
            const t = tables[o.slot - 1]!;
            const row = t.push(RecordKind.DATA, 0, 0, 0, o.hash);
            idx.add(o.slot, row, o.hash);
            const key = Buffer.from(o.hash).toString('hex');
            if (!model.has(key)) model.set(key, { slot: o.slot, row });
            seen.push(o.hash);
          } else {
            idx.dropFrom(o.slot);
            for (const [k, v] of model) if (v.slot >= o.slot) model.delete(k);
            // The cut-off layers come back empty, as a new layer in that slot would.
            for (let s = o.slot; s <= 4; s++) {
              tables[s - 1] = new RecordTable();
              idx.setTable(s, tables[s - 1]!);
            }
          }
        }
        expect(idx.size).toBe(model.size);
        for (const h of seen) expect(idx.find(h)).toEqual(model.get(Buffer.from(h).toString('hex')));
      }),
      { numRuns: 60 },
    );
  });
});
