/**
 * HashIndex: content → stored copy. Keys are 48-bit prefixes, so two different
 * hashes can share a key; a hit must be confirmed on the full hash, or dedup would
 * make two different blocks share storage.
 */
import { createHash, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { HashIndex } from '../../lib/chain/hash-index.js';
import { RecordTable } from '../../lib/chain/record-table.js';
import { RecordKind } from '../../lib/format/record.js';

function tableWith(hashes: Uint8Array[]): RecordTable {
  const t = new RecordTable();
  for (const h of hashes) t.push(RecordKind.DATA, 0, 0, 0, h);
  return t;
}

/** Two different hashes sharing their first 48 bits. */
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

  it('tells apart two hashes with the same 48-bit prefix', () => {
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
    expect(idx.size).toBe(1); // one key, two candidates
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
});
