/**
 * FastCDC: chunks cover the input, respect the size bounds, do not depend on how the
 * input arrives, and an edit disturbs only the chunks near it; the cut points are
 * those of every earlier version (a repository's files deduplicate against their
 * earlier backups only if they are); the WebAssembly gear loop rolls as the
 * JavaScript one does.
 */
import { spawnSync } from 'node:child_process';
import { createCipheriv, createHash, randomBytes } from 'node:crypto';
import path from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { FastCdc } from '../../lib/repo/fastcdc.js';
import { gearRoll, gearRollJs, rolledHash, wasmRolling } from '../../lib/repo/gear-roll.js';
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

  it('cuts where every earlier version cut', () => {
    // A fixed stream (AES-256-CTR of zeros under a fixed key); the lengths were
    // recorded with the JavaScript-only chunker of stop 24.
    const c = createCipheriv('aes-256-ctr', createHash('sha256').update('fastcdc golden').digest(), Buffer.alloc(16));
    const data = Buffer.concat([c.update(Buffer.alloc(1 << 20)), c.final()]);
    const lengths = (p: typeof params): number[] => {
      const f = new FastCdc(p);
      const out = f.push(data).map((x) => x.length);
      const last = f.finish();
      return last === undefined ? out : [...out, last.length];
    };
    const small = lengths(params);
    expect(small).toHaveLength(112);
    expect(createHash('sha256').update(JSON.stringify(small)).digest('hex')).toBe('4e7c711a4a821a78b2713c1e2641f6f9d829efe0ede9f253ec37e6f2b8a491c4');
    expect(lengths({ gearSeed: 'fedcba9876543210fedcba9876543210', min: 65536, avg: 262144, max: 1048576 })).toEqual([432271, 305949, 273192, 37164]);
  });
});

describe('the gear loop', () => {
  it('runs in WebAssembly here', () => {
    expect(wasmRolling()).toBe(true);
  });

  it('runs in JavaScript without WebAssembly (--jitless), cutting the same chunks', () => {
    const data = randomBytes(3 << 20);
    const big = { gearSeed: 'fedcba9876543210fedcba9876543210', min: 65536, avg: 262144, max: 1048576 };
    const here = new FastCdc(big);
    const want = here.push(data).map((c) => c.length);
    const last = here.finish();
    if (last !== undefined) want.push(last.length);
    // The built library (test/global-setup.ts builds it), in a process without WebAssembly.
    const lib = path.resolve(import.meta.dirname, '../../dist/lib/repo');
    const script = `
      const { FastCdc } = await import(${JSON.stringify(path.join(lib, 'fastcdc.js'))});
      const { wasmRolling } = await import(${JSON.stringify(path.join(lib, 'gear-roll.js'))});
      const chunks = [];
      process.stdin.on('data', (d) => chunks.push(d));
      process.stdin.on('end', () => {
        const f = new FastCdc(${JSON.stringify(big)});
        const lengths = f.push(Buffer.concat(chunks)).map((c) => c.length);
        const last = f.finish();
        if (last !== undefined) lengths.push(last.length);
        process.stdout.write(JSON.stringify({ wasm: wasmRolling(), lengths }));
      });`;
    const r = spawnSync(process.execPath, ['--jitless', '--no-warnings', '--input-type=module', '-e', script], { input: data, encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    const got = JSON.parse(r.stdout) as { wasm: boolean; lengths: number[] };
    expect(got.wasm).toBe(false);
    expect(got.lengths).toEqual(want);
  });

  it('finds the cut and the hash the JavaScript loop finds', () => {
    const gearOf = (seed: number): Int32Array => Int32Array.from({ length: 256 }, (_, i) => Math.imul(seed ^ i, 0x9e3779b1) ^ (i << 7));
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 700_000 }),
        fc.nat(),
        fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }),
        fc.integer({ min: 0, max: 32 }),
        fc.nat(),
        fc.integer({ min: 1, max: 3 }),
        (n, start, fp, bits, seed, tables) => {
          const buf = randomBytes(n);
          const from = n === 0 ? 0 : start % (n + 1);
          // Masks of the top `bits` bits, as FastCDC uses (0 bits: every byte cuts).
          const mask = bits === 0 ? 0 : (-1 << (32 - bits)) | 0;
          // Several tables in turn, as several chunkers interleaved would use them.
          for (let t = 0; t < tables; t++) {
            const gear = gearOf(seed + t);
            const want = gearRollJs(buf, from, n, fp, gear, mask);
            const wantHash = rolledHash();
            const got = gearRoll(buf, from, n, fp, gear, mask);
            expect(got).toBe(want);
            if (want < 0) expect(rolledHash()).toBe(wantHash);
          }
        },
      ),
      { numRuns: propertyRuns(200) },
    );
  });
});
