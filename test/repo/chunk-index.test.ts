/**
 * The in-memory index against a Map: random packs, pending packs, duplicates across
 * packs with flags (condemned, bad), abandoning a pending pack, and lookups in place
 * in a page of hashes; and its columns through the index cache format and back.
 */
import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { BlobKind, Compression, encodePackTail, packNameOf } from '../../lib/format/pack-header.js';
import { decodeIndexCache, encodeIndexCache, indexCacheParts } from '../../lib/format/index-cache.js';
import { ChunkIndex, PackFlag, type ChunkIndexColumns } from '../../lib/repo/chunk-index.js';
import { propertyRuns } from '../helpers/temp-dir.js';

describe('ChunkIndex', () => {
  it('resolves every hash like a Map does, preferring copies in usable packs', () => {
    fc.assert(
      fc.property(
        fc.array(fc.record({ n: fc.integer({ min: 1, max: 40 }), reuse: fc.nat(30), flags: fc.constantFrom(0, PackFlag.CONDEMNED, PackFlag.BAD) }), { minLength: 1, maxLength: 30 }),
        (packs) => {
          const index = new ChunkIndex();
          const pool: Buffer[] = [];
          const model = new Map<string, { pack: number; flags: number }>();
          packs.forEach((p, pi) => {
            const list = Array.from({ length: p.n }, (_, i) => {
              const hash = i < p.reuse && pool.length > 0 ? pool[(i * 7 + pi) % pool.length]! : randomBytes(32);
              pool.push(hash);
              return { hash, storedLength: 10 + i, rawLength: 10 + i, kind: BlobKind.DATA, compression: Compression.NONE };
            });
            // A hash twice in one pack is allowed too; the first entry wins then.
            const tail = encodePackTail(list);
            const size = list.reduce((a, b) => a + b.storedLength, 0) + tail.length;
            const id = index.addPack(packNameOf(tail), size, tail, p.flags);
            for (const b of list) {
              const key = b.hash.toString('hex');
              const cur = model.get(key);
              if (cur === undefined || (cur.flags !== 0 && p.flags === 0)) model.set(key, { pack: id, flags: p.flags });
            }
          });
          for (const [key, want] of model) {
            const id = index.find(Buffer.from(key, 'hex'));
            expect(id).toBeGreaterThanOrEqual(0);
            expect(index.packOf(id)).toBe(want.pack);
            expect(index.hashOf(id).toString('hex')).toBe(key);
            expect(index.findUsable(Buffer.from(key, 'hex')) >= 0).toBe(want.flags === 0);
            // The same lookup in place, in a page of hashes (a backup's chunk list).
            const page = Buffer.concat([randomBytes(32), Buffer.from(key, 'hex'), randomBytes(32)]);
            expect(index.findUsableAt(page, 32)).toBe(index.findUsable(Buffer.from(key, 'hex')));
          }
          expect(index.find(randomBytes(32))).toBe(-1);
          expect(index.findUsableAt(randomBytes(96), 32)).toBe(-1);
        },
      ),
      { numRuns: propertyRuns(60) },
    );
  });

  it('answers for a whole page at once as one lookup per hash does, aligned or not', () => {
    fc.assert(
      fc.property(
        fc.array(fc.record({ n: fc.integer({ min: 1, max: 40 }), flags: fc.constantFrom(0, PackFlag.CONDEMNED, PackFlag.BAD) }), { minLength: 1, maxLength: 20 }),
        fc.array(fc.constantFrom('present', 'absent', 'zero', 'near'), { maxLength: 200 }),
        fc.integer({ min: 0, max: 3 }),
        (packs, kinds, shift) => {
          const index = new ChunkIndex();
          const pool: Buffer[] = [];
          for (const p of packs) {
            const list = Array.from({ length: p.n }, (_, i) => ({ hash: randomBytes(32), storedLength: 10 + i, rawLength: 10 + i, kind: BlobKind.DATA, compression: Compression.NONE }));
            pool.push(...list.map((b) => b.hash));
            const tail = encodePackTail(list);
            index.addPack(packNameOf(tail), list.reduce((a, b) => a + b.storedLength, 0) + tail.length, tail, p.flags);
          }
          // The page at `shift` bytes into its buffer: 0 is the word-at-a-time path.
          const buffer = Buffer.alloc(shift + kinds.length * 32);
          const page = buffer.subarray(shift);
          kinds.forEach((k, i) => {
            const h = k === 'present' ? pool[(i * 13) % pool.length]! : k === 'zero' ? Buffer.alloc(32) : randomBytes(32);
            // 'near': a stored hash with its last byte changed (same home slot, different hash).
            if (k === 'near') pool[(i * 5) % pool.length]!.copy(h, 0, 0, 31);
            h.copy(page, i * 32);
          });
          const out = new Uint8Array(kinds.length).fill(7);
          index.usableInPage(page, kinds.length, out);
          kinds.forEach((_, i) => expect(out[i]).toBe(index.findUsableAt(page, i * 32) >= 0 ? 1 : 0));
        },
      ),
      { numRuns: propertyRuns(60) },
    );
    expect(() => new ChunkIndex().usableInPage(Buffer.alloc(64), 3, new Uint8Array(3))).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
    expect(() => new ChunkIndex().usableInPage(Buffer.alloc(96), 3, new Uint8Array(2))).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
  });

  it('serves pending entries at once and forgets an abandoned pack', () => {
    const index = new ChunkIndex();
    const h1 = randomBytes(32);
    const h2 = randomBytes(32);
    const p = index.beginPack();
    index.addPendingEntry(p, h1, 0, 5, 5, BlobKind.DATA, Compression.NONE);
    expect(index.findUsable(h1)).toBeGreaterThanOrEqual(0);
    index.finishPack(p, 'a'.repeat(64), 100);
    expect(index.packId('a'.repeat(64))).toBe(p);
    const q = index.beginPack();
    index.addPendingEntry(q, h2, 0, 5, 5, BlobKind.DATA, Compression.NONE);
    index.addPendingEntry(q, h1, 5, 5, 5, BlobKind.DATA, Compression.NONE);
    index.abandonPack(q);
    expect(index.find(h2)).toBe(-1);
    expect(index.packOf(index.find(h1))).toBe(p);
    expect(index.entryCount).toBe(1);
  });

  it('grows past its initial table without losing entries', () => {
    const index = new ChunkIndex();
    const hashes: Buffer[] = [];
    for (let k = 0; k < 20; k++) {
      const list = Array.from({ length: 500 }, () => ({ hash: randomBytes(32), storedLength: 1, rawLength: 1, kind: BlobKind.DATA, compression: Compression.NONE }));
      hashes.push(...list.map((b) => b.hash));
      const tail = encodePackTail(list);
      index.addPack(packNameOf(tail), 500 + tail.length, tail);
    }
    expect(index.entryCount).toBe(10_000);
    for (const h of hashes) expect(index.hashOf(index.find(h)).equals(h)).toBe(true);
  });

  describe('columns', () => {
    /** An index of random packs with shared hashes and flags, plus a finished pending pack. */
    function randomIndex(packs: { n: number; reuse: number; flags: number }[]): { index: ChunkIndex; hashes: Buffer[] } {
      const index = new ChunkIndex();
      const hashes: Buffer[] = [];
      packs.forEach((p, pi) => {
        const list = Array.from({ length: p.n }, (_, i) => {
          const hash = i < p.reuse && hashes.length > 0 ? hashes[(i * 7 + pi) % hashes.length]! : randomBytes(32);
          hashes.push(hash);
          const deflated = i % 3 === 0;
          return { hash, storedLength: 10 + i, rawLength: deflated ? 20 + i : 10 + i, kind: BlobKind.DATA, compression: deflated ? Compression.DEFLATE : Compression.NONE };
        });
        const tail = encodePackTail(list);
        index.addPack(packNameOf(tail), list.reduce((n, b) => n + b.storedLength, 0) + tail.length, tail, p.flags);
      });
      const pending = index.beginPack();
      const fresh = randomBytes(32);
      hashes.push(fresh);
      index.addPendingEntry(pending, fresh, 0, 7, 9, BlobKind.DATA, Compression.NONE);
      index.finishPack(pending, randomBytes(32).toString('hex'), 7);
      return { index, hashes };
    }

    function expectSame(a: ChunkIndex, b: ChunkIndex, hashes: readonly Buffer[]): void {
      expect(b.entryCount).toBe(a.entryCount);
      expect(b.packCount).toBe(a.packCount);
      for (let p = 0; p < a.packCount; p++) {
        expect([b.packName(p), b.packSize(p), b.packFlags(p), b.packEntries(p)]).toEqual([a.packName(p), a.packSize(p), a.packFlags(p), a.packEntries(p)]);
        expect(b.packId(a.packName(p))).toBe(p);
      }
      for (let id = 0; id < a.entryCount; id++) {
        expect([b.hashOf(id), b.packOf(id), b.offsetOf(id), b.storedLengthOf(id), b.rawLengthOf(id), b.kindOf(id), b.compressionOf(id), b.isPreferred(id)]).toEqual([
          a.hashOf(id), a.packOf(id), a.offsetOf(id), a.storedLengthOf(id), a.rawLengthOf(id), a.kindOf(id), a.compressionOf(id), a.isPreferred(id),
        ]);
      }
      for (const h of hashes) {
        expect(b.find(h)).toBe(a.find(h));
        expect(b.findUsable(h)).toBe(a.findUsable(h));
      }
      expect(b.find(randomBytes(32))).toBe(-1);
    }

    it('survive the cache format: the loaded index answers like the one saved, and keeps growing', () => {
      fc.assert(
        fc.property(
          fc.array(fc.record({ n: fc.integer({ min: 1, max: 60 }), reuse: fc.nat(40), flags: fc.constantFrom(0, PackFlag.CONDEMNED, PackFlag.BAD) }), { maxLength: 25 }),
          (packs) => {
            const { index, hashes } = randomIndex(packs);
            const avoid = randomBytes(32);
            const files = [{ name: randomBytes(32).toString('hex'), size: 1234 }];
            const vouched = Array.from({ length: packs.length % 4 }, () => randomBytes(16).toString('hex'));
            const bytes = encodeIndexCache({ repo: 'r'.repeat(32), avoid, files, vouched, columns: index.columns() });
            // The header is padded so that the columns start 4-aligned (read in place).
            expect((16 + bytes.readUInt32LE(12)) % 4).toBe(0);
            const c = decodeIndexCache(bytes, bytes.length);
            expect(c.repo).toBe('r'.repeat(32));
            expect(c.avoid.equals(avoid)).toBe(true);
            expect(c.files).toEqual(files);
            expect(c.vouched).toEqual(vouched);
            const loaded = ChunkIndex.fromColumns(c.columns);
            expectSame(index, loaded, hashes);
            // The columns are views of the bytes where word-aligned there, copies
            // elsewhere: the same index either way, at every alignment of the file.
            for (let shift = 1; shift < 4; shift++) {
              const moved = Buffer.alloc(bytes.length + shift);
              moved.set(bytes, shift);
              expectSame(index, ChunkIndex.fromColumns(decodeIndexCache(moved.subarray(shift), bytes.length).columns), hashes);
            }
            // It is a working index: new entries resolve, old ones still do.
            const more = Array.from({ length: 1500 }, () => randomBytes(32));
            const p = loaded.beginPack();
            more.forEach((h, i) => loaded.addPendingEntry(p, h, i, 1, 1, BlobKind.DATA, Compression.NONE));
            for (const h of [...hashes, ...more]) expect(loaded.hashOf(loaded.find(h)).equals(h)).toBe(true);
          },
        ),
        { numRuns: propertyRuns(30) },
      );
    });

    it('are written from views of the index: a column changed before the write leaves a file that fails its checksum', () => {
      const { index } = randomIndex([{ n: 30, reuse: 5, flags: 0 }]);
      const content = { repo: 'x', avoid: Buffer.alloc(32), files: [], vouched: [], columns: index.columns() };
      const parts = indexCacheParts(content);
      expect(Buffer.concat(parts).equals(encodeIndexCache(content))).toBe(true);
      content.columns.offset[0]! ^= 1; // the index's own memory
      expect(() => decodeIndexCache(Buffer.concat(parts), 1 << 20)).toThrow(/checksum mismatch/);
    });

    it('keep where each pack\'s entries start (counterexample: one pack of one entry, then a second pack)', () => {
      const { index, hashes } = randomIndex([{ n: 1, reuse: 0, flags: 0 }]);
      const loaded = ChunkIndex.fromColumns(decodeIndexCache(encodeIndexCache({ repo: 'x', avoid: Buffer.alloc(32), files: [], vouched: [], columns: index.columns() }), 1 << 20).columns);
      expect([loaded.packEntries(0), loaded.packEntries(1)]).toEqual([{ first: 0, count: 1 }, { first: 1, count: 1 }]);
      expectSame(index, loaded, hashes);
    });

    it('are refused when they do not fit together', () => {
      const { index } = randomIndex([{ n: 30, reuse: 10, flags: 0 }, { n: 20, reuse: 15, flags: PackFlag.BAD }]);
      const c = index.columns();
      const copy = (): ChunkIndexColumns => decodeIndexCache(encodeIndexCache({ repo: 'x', avoid: Buffer.alloc(32), files: [], vouched: [], columns: c }), 1 << 24).columns;
      expect(() => ChunkIndex.fromColumns(copy())).not.toThrow();
      const broken: [string, (k: ChunkIndexColumns) => ChunkIndexColumns][] = [
        ['an entry in the wrong pack', (k) => (k.pack[3] = 1, k)],
        ['a pack id past the end', (k) => (k.pack[49] = 7, k)],
        ['a table slot naming no entry', (k) => (k.table[k.table.findIndex((v) => v === 0)] = 9999, k)],
        ['a table slot naming an entry twice', (k) => (k.table[k.table.findIndex((v) => v === 0)] = k.table.find((v) => v !== 0)!, k)],
        ['a preferred entry missing from the table', (k) => (k.table[k.table.findIndex((v) => v !== 0)] = 0, k)],
        ['counts that do not cover the entries', (k) => ({ ...k, packCounts: [30, 19, 1] })],
        ['a pending pack', (k) => (k.packFlags[0] = PackFlag.PENDING, k)],
        ['a pack named twice', (k) => ({ ...k, packNames: [k.packNames[0]!, k.packNames[0]!, k.packNames[2]!] })],
        ['columns of different lengths', (k) => ({ ...k, raw: k.raw.subarray(1) })],
        ['a table that is not a power of two', (k) => ({ ...k, table: Int32Array.from([...k.table, 0]) })],
      ];
      for (const [what, mutate] of broken) {
        expect(() => ChunkIndex.fromColumns(mutate(copy())), what).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
      }
    });

    it('cannot be taken while a pack is being written', () => {
      const index = new ChunkIndex();
      index.beginPack();
      expect(() => index.columns()).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
    });
  });
});
