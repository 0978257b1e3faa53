/**
 * FastCDC: chunks cover the input, respect the size bounds, do not depend on how the
 * input arrives, and an edit disturbs only the chunks near it.
 */
import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { FastCdc } from '../../lib/repo/fastcdc.js';
import { propertyRuns } from '../helpers/temp-dir.js';

const params = { gearSeed: '0123456789abcdef0123456789abcdef', min: 2048, avg: 8192, max: 32768 };

function chunk(data: Buffer, splits: number[] = []): Buffer[] {
  const c = new FastCdc(params);
  const out: Buffer[] = [];
  let at = 0;
  for (const s of [...splits.filter((x) => x > 0 && x < data.length)].sort((a, b) => a - b).concat(data.length)) {
    out.push(...c.push(data.subarray(at, s)).map((b) => Buffer.from(b)));
    at = s;
  }
  const last = c.finish();
  if (last !== undefined) out.push(Buffer.from(last));
  return out;
}

describe('FastCDC', () => {
  it('covers the input with chunks within the bounds, whatever the split into pushes', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 300_000 }), fc.array(fc.nat(300_000), { maxLength: 20 }), (n, splits) => {
        const data = randomBytes(n);
        const whole = chunk(data);
        expect(Buffer.concat(whole).equals(data)).toBe(true);
        whole.slice(0, -1).forEach((c) => {
          expect(c.length).toBeGreaterThanOrEqual(params.min);
          expect(c.length).toBeLessThanOrEqual(params.max);
        });
        expect(chunk(data, splits).map((c) => c.length)).toEqual(whole.map((c) => c.length));
      }),
      { numRuns: propertyRuns(40) },
    );
  });

  it('averages near the target size on random data', () => {
    const sizes = chunk(randomBytes(4 << 20)).map((c) => c.length);
    const avg = sizes.reduce((a, b) => a + b, 0) / sizes.length;
    expect(avg).toBeGreaterThan(params.avg * 0.6);
    expect(avg).toBeLessThan(params.avg * 1.8);
  });

  it('keeps the chunks away from an insertion unchanged', () => {
    const data = randomBytes(1 << 20);
    const edited = Buffer.concat([data.subarray(0, 500_000), Buffer.from('inserted bytes'), data.subarray(500_000)]);
    const a = new Set(chunk(data).map((c) => c.toString('hex')));
    const b = chunk(edited);
    const shared = b.filter((c) => a.has(c.toString('hex'))).length;
    expect(shared).toBeGreaterThanOrEqual(b.length - 3);
  });

  it('cuts an all-zero stream at the maximum size', () => {
    const sizes = chunk(Buffer.alloc(200_000)).map((c) => c.length);
    expect(sizes.slice(0, -1).every((s) => s === params.max)).toBe(true);
  });
});
