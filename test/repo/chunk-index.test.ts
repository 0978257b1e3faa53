/**
 * The in-memory index against a Map: random packs, pending packs, duplicates across
 * packs with flags (condemned, bad), abandoning a pending pack, and lookups in place
 * in a page of hashes.
 */
import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { BlobKind, Compression, encodePackTail, packNameOf } from '../../lib/format/pack-header.js';
import { ChunkIndex, PackFlag } from '../../lib/repo/chunk-index.js';
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
});
