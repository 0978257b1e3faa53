/**
 * RecordTable: rows appended and read back column by column, across growth, with
 * hashes kept exactly (all zero meaning "not computed").
 */
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { RecordTable } from '../../lib/chain/record-table.js';
import { RecordKind } from '../../lib/format/record.js';

describe('RecordTable', () => {
  it('returns every row as pushed, across many growths', () => {
    const t = new RecordTable();
    const rows = Array.from({ length: 5000 }, (_, i) => ({
      kind: ([RecordKind.DATA, RecordKind.ZERO, RecordKind.REF, RecordKind.BLOB] as const)[i % 4]!,
      block: i * 3 + 2 ** 35,
      offset: 8192 + i * 4144,
      crc: (i * 2654435761) >>> 0,
      hash: i % 3 === 0 ? undefined : randomBytes(32),
    }));
    rows.forEach((r, i) => expect(t.push(r.kind, r.block, r.offset, r.crc, r.hash)).toBe(i));
    expect(t.count).toBe(rows.length);
    rows.forEach((r, i) => {
      expect(t.kind(i)).toBe(r.kind);
      expect(t.block(i)).toBe(r.block);
      expect(t.offset(i)).toBe(r.offset);
      expect(t.crc(i)).toBe(r.crc);
      expect(t.hasHash(i)).toBe(r.hash !== undefined);
      expect(Buffer.from(t.hash(i)).equals(r.hash ?? Buffer.alloc(32))).toBe(true);
    });
  });

  it('keeps every row across reserve, whether it grows the table or not', () => {
    const t = new RecordTable();
    for (let i = 0; i < 50; i++) t.push(RecordKind.DATA, i, i * 10, i, Buffer.alloc(32, i + 1));
    t.reserve(10); // fits already
    t.reserve(1000);
    for (let i = 50; i < 1050; i++) t.push(RecordKind.ZERO, i, i * 10, i, undefined);
    t.reserve(0);
    expect(t.count).toBe(1050);
    for (const i of [0, 49, 50, 1049]) {
      expect([t.kind(i), t.block(i), t.offset(i), t.crc(i)]).toEqual([i < 50 ? RecordKind.DATA : RecordKind.ZERO, i, i * 10, i]);
      expect(t.hasHash(i)).toBe(i < 50);
    }
    expect(t.hash(49)[0]).toBe(50);
  });

  it('tells whether any row is of a kind', () => {
    const t = new RecordTable();
    expect(t.hasKind(RecordKind.DATA)).toBe(false);
    for (let i = 0; i < 300; i++) t.push(RecordKind.DATA, i, i, 0, undefined);
    expect([t.hasKind(RecordKind.DATA), t.hasKind(RecordKind.REF), t.hasKind(RecordKind.ZERO)]).toEqual([true, false, false]);
    t.push(RecordKind.REF, 7, 0, 0, randomBytes(32));
    expect(t.hasKind(RecordKind.REF)).toBe(true);
  });

  it('columns(from, to) are copies of exactly those rows', () => {
    const t = new RecordTable();
    for (let i = 0; i < 100; i++) t.push(RecordKind.DATA, i, i * 10, i, Buffer.alloc(32, i));
    const c = t.columns(40, 45);
    expect(c.count).toBe(5);
    expect([...c.blocks]).toEqual([40, 41, 42, 43, 44]);
    expect([...c.offsets]).toEqual([400, 410, 420, 430, 440]);
    expect([...c.crcs]).toEqual([40, 41, 42, 43, 44]);
    expect(c.hashes.length).toBe(5 * 32);
    expect(c.hashes[0]).toBe(40);
    expect(c.hashes[4 * 32 + 31]).toBe(44);
    t.push(RecordKind.ZERO, 999, 0, 0, undefined);
    c.blocks[0] = -1;
    expect(t.block(40)).toBe(40);
  });

  it('a pushed hash is copied, not kept by reference', () => {
    const t = new RecordTable();
    const h = Buffer.alloc(32, 7);
    t.push(RecordKind.DATA, 0, 0, 0, h);
    h.fill(9);
    expect(t.hash(0)[0]).toBe(7);
  });
});
