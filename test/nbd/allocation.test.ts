/**
 * base:allocation descriptors: they start at the request offset, are contiguous,
 * never pass the request end, merge equal neighbours, and honour REQ_ONE and the
 * work caps; checked against a per-byte model on random layouts.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { allocationDescriptors } from '../../lib/nbd/allocation.js';
import { propertyRuns } from '../helpers/temp-dir.js';

describe('allocationDescriptors', () => {
  it('describes exactly the flags of each byte of the covered prefix', () => {
    fc.assert(
      fc.property(
        fc.array(fc.constantFrom(0, 3), { minLength: 1, maxLength: 40 }),
        fc.constantFrom(512, 4096),
        fc.nat(),
        fc.nat(),
        fc.boolean(),
        fc.integer({ min: 1, max: 5 }),
        (blocks, bs, a, b, reqOne, maxDescriptors) => {
          const size = blocks.length * bs;
          const offset = a % size;
          const length = 1 + (b % (size - offset));
          const out = allocationDescriptors({ offset, length, blockSize: bs, flagsOf: (i) => blocks[i]!, reqOne, maxDescriptors });
          expect(out.length).toBeGreaterThan(0);
          if (reqOne) expect(out.length).toBe(1);
          else expect(out.length).toBeLessThanOrEqual(maxDescriptors);
          let pos = offset;
          for (const [i, d] of out.entries()) {
            expect(d.length).toBeGreaterThan(0);
            for (let p = pos; p < pos + d.length; p += 1 + Math.floor(d.length / 7)) expect(blocks[Math.floor(p / bs)]).toBe(d.flags);
            expect(blocks[Math.floor((pos + d.length - 1) / bs)]).toBe(d.flags);
            if (i > 0) expect(d.flags).not.toBe(out[i - 1]!.flags);
            pos += d.length;
          }
          expect(pos).toBeLessThanOrEqual(offset + length);
          // Covering less than asked is only allowed when a cap cut the answer short.
          if (pos < offset + length) expect(reqOne || out.length === maxDescriptors).toBe(true);
        },
      ),
      { numRuns: propertyRuns(300) },
    );
  });

  it('stops after maxBlocks blocks and still returns one descriptor', () => {
    const out = allocationDescriptors({ offset: 0, length: 1 << 30, blockSize: 4096, flagsOf: () => 0, maxBlocks: 10 });
    expect(out).toEqual([{ length: 10 * 4096, flags: 0 }]);
  });
});
