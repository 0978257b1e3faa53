/**
 * Sizes on the command line (docs/CLI.md): 4096, 64k, 64Ki, 64KiB, 1G, 1Gi, 1.5G,
 * every suffix binary as in qemu-img; anything else refused. Counts and the
 * human byte format too.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { formatBytes, parseCount, parseSize } from '../../cli/parse-size.js';

describe('parseSize', () => {
  it('accepts the documented forms', () => {
    const cases: [string, number][] = [
      ['4096', 4096],
      ['0', 0],
      ['64k', 65536],
      ['64K', 65536],
      ['64Ki', 65536],
      ['64KiB', 65536],
      ['64kb', 65536],
      ['1M', 2 ** 20],
      ['1Mi', 2 ** 20],
      ['1G', 2 ** 30],
      ['1Gi', 2 ** 30],
      ['1g', 2 ** 30],
      ['1.5G', 1.5 * 2 ** 30],
      ['2T', 2 * 2 ** 40],
      ['1P', 2 ** 50],
      ['0.5k', 512],
      [' 8k ', 8192],
      ['10B', 10],
    ];
    for (const [text, value] of cases) expect(parseSize(text), text).toBe(value);
  });

  it('refuses everything else', () => {
    for (const text of ['', ' ', 'abc', '-1', '-4096', '+4096', '1.5', '0.3k', '1e3', '0x1000', '1X', '1E', '1 G B', 'Ki', '1i', '1iB', '1KiBB', '1,5G', '8P', '9007199254740993', 'NaN', 'Infinity']) {
      expect(() => parseSize(text), JSON.stringify(text)).toThrow();
    }
  });

  it('round-trips every whole number of bytes written plainly or in whole KiB', () => {
    fc.assert(
      fc.property(fc.maxSafeNat(), (n) => {
        expect(parseSize(String(n))).toBe(n);
      }),
    );
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 2 ** 40 }), (k) => {
        expect(parseSize(`${k}Ki`)).toBe(k * 1024);
      }),
    );
  });
});

describe('parseCount', () => {
  it('accepts whole numbers only', () => {
    expect(parseCount('0')).toBe(0);
    expect(parseCount('512')).toBe(512);
    for (const t of ['', '-1', '1.0', '1k', 'x', '9007199254740993']) expect(() => parseCount(t), t).toThrow();
  });
});

describe('formatBytes', () => {
  it('prints exact bytes below 1 KiB and short binary units above', () => {
    expect(formatBytes(0)).toBe('0 B');
    expect(formatBytes(1023)).toBe('1023 B');
    expect(formatBytes(1024)).toBe('1 KiB');
    expect(formatBytes(1536)).toBe('1.5 KiB');
    expect(formatBytes(64 * 1024)).toBe('64 KiB');
    expect(formatBytes(2 ** 30)).toBe('1 GiB');
    expect(formatBytes(2 ** 40)).toBe('1 TiB');
    expect(formatBytes(2 ** 50)).toBe('1 PiB');
    expect(formatBytes(2 ** 60)).toBe('1024 PiB');
  });
});
