/**
 * BlockTable against a plain Map: any sequence of sets and deletes, over block
 * numbers from 0 to the largest disk's last block, gives the same answers; an
 * overlay of one table on another, or an assignment of rows, equals setting its
 * blocks one by one; and memory follows the blocks present, not the block numbers.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { BlockTable } from '../../lib/chain/block-table.js';
import { MAX_VIRTUAL_SIZE, MIN_BLOCK_SIZE } from '../../lib/format/limits.js';
import { propertyRuns } from '../helpers/temp-dir.js';

const LAST_BLOCK = MAX_VIRTUAL_SIZE / MIN_BLOCK_SIZE - 1; // 2^38 - 1

type Op = { set: true; block: number; tag: number; num: number } | { set: false; block: number };

/** Block numbers clustered in a few pages, plus far-flung ones, so pages fill and empty. */
const blockArb = fc.oneof(fc.nat(2000), fc.integer({ min: 0, max: LAST_BLOCK }), fc.integer({ min: 2 ** 32 - 600, max: 2 ** 32 + 600 }));
const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ set: fc.constant(true as const), block: blockArb, tag: fc.integer({ min: 1, max: 0xffff }), num: fc.double({ noNaN: true }) }),
  fc.record({ set: fc.constant(false as const), block: blockArb }),
);

/** Applies `ops` to a table and a Map, with `fills` of whole 512-block pages first. */
function build(ops: readonly Op[], fills: readonly number[]): { t: BlockTable; m: Map<number, { tag: number; num: number }> } {
  const t = new BlockTable();
  const m = new Map<number, { tag: number; num: number }>();
  for (const page of fills) {
    for (let b = page * 512; b < page * 512 + 512; b++) {
      t.set(b, 3, b * 2);
      m.set(b, { tag: 3, num: b * 2 });
    }
  }
  for (const op of ops) apply(t, m, op);
  return { t, m };
}

/** One operation on the table and on its model. */
function apply(t: BlockTable, m: Map<number, { tag: number; num: number }>, op: Op): void {
  if (op.set) {
    t.set(op.block, op.tag, op.num);
    m.set(op.block, { tag: op.tag, num: op.num });
  } else {
    t.delete(op.block);
    m.delete(op.block);
  }
}

describe('BlockTable', () => {
  it('assigns rows as if each were set in turn, counting one tag', () => {
    const rowArb = fc.record({ block: blockArb, tag: fc.integer({ min: 1, max: 5 }) });
    fc.assert(
      fc.property(fc.array(opArb, { maxLength: 100 }), fc.array(rowArb, { maxLength: 300 }), fc.nat(1000), (ops, rows, first) => {
        const { t, m } = build(ops.map((o) => (o.set ? { ...o, tag: (o.tag % 5) + 1 } : o)), []);
        let set = 0;
        let replaced = 0;
        rows.forEach((r, k) => {
          if (r.tag === 4) return; // skipped
          if (m.get(r.block)?.tag === 1) replaced++;
          if (r.tag === 1) set++;
          m.set(r.block, { tag: r.tag, num: first + k });
        });
        const got = t.assign(Float64Array.from(rows, (r) => r.block), Uint8Array.from(rows, (r) => r.tag), first, rows.length, 4, 1);
        expect(got).toEqual({ set, replaced });
        expect(t.size).toBe(m.size);
        for (const [b, v] of m) expect([t.tag(b), t.num(b)]).toEqual([v.tag, v.num]);
      }),
      { numRuns: propertyRuns(100) },
    );
  });

  it('overlays another table as if each of its blocks were set in turn', () => {
    const pageArb = fc.oneof(fc.nat(4), fc.integer({ min: 0, max: Math.floor(LAST_BLOCK / 512) }));
    fc.assert(
      fc.property(fc.array(opArb, { maxLength: 200 }), fc.array(pageArb, { maxLength: 3 }), fc.array(opArb, { maxLength: 200 }), fc.array(pageArb, { maxLength: 3 }), fc.integer({ min: 1, max: 0xffff }), (baseOps, baseFills, topOps, topFills, tag) => {
          const base = build(baseOps, baseFills);
          const top = build(topOps, topFills);
          base.t.overlay(top.t, tag);
          for (const [b, v] of top.m) base.m.set(b, { tag, num: v.num });
          expect(base.t.size).toBe(base.m.size);
          const seen: [number, number, number][] = [];
          base.t.forEach((b, tg, num) => seen.push([b, tg, num]));
          expect(seen).toEqual([...base.m].sort((x, y) => x[0] - y[0]).map(([b, v]) => [b, v.tag, v.num]));
          for (const [b, v] of base.m) expect([base.t.tag(b), base.t.num(b)]).toEqual([v.tag, v.num]);
      }),
      { numRuns: propertyRuns(100) },
    );
    expect(() => new BlockTable().overlay(new BlockTable(), 0)).toThrow(RangeError);
  });

  it('behaves like a Map from block to (tag, num) for any sequence of sets and deletes', () => {
    fc.assert(
      fc.property(fc.array(opArb, { maxLength: 300 }), (ops) => {
        const t = new BlockTable();
        const m = new Map<number, { tag: number; num: number }>();
        const touched = new Set<number>();
        for (const op of ops) {
          touched.add(op.block);
          apply(t, m, op);
          // Interleave reads so the one-page cache is exercised between writes.
          const probe = ops[Math.floor(op.block % ops.length)]!.block;
          expect(t.tag(probe)).toBe(m.get(probe)?.tag ?? 0);
        }
        expect(t.size).toBe(m.size);
        for (const b of touched) {
          expect(t.has(b)).toBe(m.has(b));
          expect(t.tag(b)).toBe(m.get(b)?.tag ?? 0);
          if (m.has(b)) expect(Object.is(t.num(b), m.get(b)!.num) || t.num(b) === m.get(b)!.num).toBe(true);
        }
        const sorted = [...m.keys()].sort((a, b) => a - b);
        expect(t.blocks()).toEqual(sorted);
        const seen: [number, number, number][] = [];
        t.forEach((b, tag, num) => seen.push([b, tag, num]));
        expect(seen).toEqual(sorted.map((b) => [b, m.get(b)!.tag, m.get(b)!.num]));
      }),
      { numRuns: propertyRuns(200) },
    );
  });

  it('keeps exact numbers up to 2^53 (file offsets)', () => {
    const t = new BlockTable();
    t.set(LAST_BLOCK, 7, Number.MAX_SAFE_INTEGER);
    t.set(0, 1, 2 ** 40 + 1);
    expect(t.num(LAST_BLOCK)).toBe(Number.MAX_SAFE_INTEGER);
    expect(t.num(0)).toBe(2 ** 40 + 1);
    expect(t.blocks()).toEqual([0, LAST_BLOCK]);
  });

  it('tells block numbers 2^32 apart (no 32-bit wrap-around)', () => {
    const t = new BlockTable();
    t.set(5, 1, 1);
    t.set(2 ** 32 + 5, 2, 2);
    t.set(2 ** 33 + 5, 3, 3);
    expect([t.tag(5), t.tag(2 ** 32 + 5), t.tag(2 ** 33 + 5)]).toEqual([1, 2, 3]);
    t.delete(2 ** 32 + 5);
    expect([t.tag(5), t.tag(2 ** 32 + 5), t.tag(2 ** 33 + 5)]).toEqual([1, 0, 3]);
  });

  it('setting an existing block replaces it without counting it twice; deleting an absent one does nothing', () => {
    const t = new BlockTable();
    t.set(10, 1, 1);
    t.set(10, 2, 2);
    t.delete(11);
    t.delete(1_000_000);
    expect(t.size).toBe(1);
    expect(t.tag(10)).toBe(2);
  });

  it('memory follows the pages present, and is given back when they empty', () => {
    const t = new BlockTable();
    expect(t.memoryBytes).toBe(0);
    for (let i = 0; i < 512; i++) t.set(i, 1, i); // one full page
    const onePage = t.memoryBytes;
    expect(onePage).toBeGreaterThan(0);
    expect(onePage).toBeLessThan(16 * 1024);
    t.set(LAST_BLOCK, 1, 0);
    expect(t.memoryBytes).toBe(2 * onePage);
    for (let i = 0; i < 512; i++) t.delete(i);
    t.delete(LAST_BLOCK);
    expect(t.memoryBytes).toBe(0);
    expect(t.size).toBe(0);
  });
});
