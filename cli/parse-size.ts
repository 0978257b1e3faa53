/**
 * Sizes on the command line: `4096`, `64k`, `64Ki`, `64KiB`, `1G`, `1Gi`, `1.5G`.
 *
 * As in qemu-img, every suffix is binary: k = 1024, M = 1024², G, T, P; an `i` and
 * a trailing `B` are accepted and change nothing. The result must be a safe integer.
 */
import { InvalidArgumentError } from 'commander';
import type { CalendarSpan } from '../lib/index.js';

const UNITS: Record<string, number> = { '': 1, k: 2 ** 10, m: 2 ** 20, g: 2 ** 30, t: 2 ** 40, p: 2 ** 50 };

export function parseSize(text: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([kmgtp]?)(i?)(b?)\s*$/i.exec(text);
  if (m === null) throw new InvalidArgumentError(`not a size: ${JSON.stringify(text)} (use e.g. 4096, 64Ki, 1G)`);
  const unit = UNITS[m[2]!.toLowerCase()]!;
  if (m[3] !== '' && m[2] === '') throw new InvalidArgumentError(`not a size: ${JSON.stringify(text)}`);
  const value = Number(m[1]) * unit;
  if (!Number.isSafeInteger(value)) {
    throw new InvalidArgumentError(`${JSON.stringify(text)} is not a whole number of bytes within range`);
  }
  return value;
}

/** Parses a non-negative integer option (counts, depths). */
export function parseCount(text: string): number {
  if (!/^\d+$/.test(text.trim())) throw new InvalidArgumentError(`not a whole number: ${JSON.stringify(text)}`);
  const n = Number(text);
  if (!Number.isSafeInteger(n)) throw new InvalidArgumentError(`${text} is too large`);
  return n;
}

/** Parses a calendar span as restic writes it: `1y2m3d4h`, any of the parts, in that order. */
export function parseSpan(text: string): CalendarSpan {
  const m = /^(?:(\d{1,6})y)?(?:(\d{1,6})m)?(?:(\d{1,6})d)?(?:(\d{1,6})h)?$/.exec(text.trim());
  if (m === null || text.trim() === '') throw new InvalidArgumentError(`not a span: ${JSON.stringify(text)} (use e.g. 7d, 2m, 1y6m, 36h)`);
  const [years, months, days, hours] = [m[1], m[2], m[3], m[4]].map((v) => (v === undefined ? 0 : Number(v)));
  return { years: years!, months: months!, days: days!, hours: hours! };
}

/** Parses a fraction in (0, 1] (thresholds). */
export function parseFraction(text: string): number {
  const n = Number(text);
  if (text.trim() === '' || !(n > 0 && n <= 1)) throw new InvalidArgumentError(`not a fraction in (0, 1]: ${JSON.stringify(text)}`);
  return n;
}

/** 1536 → "1.5 KiB"; exact byte counts below 1 KiB. */
export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let v = n / 1024;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  const text = v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2);
  return `${text.includes('.') ? text.replace(/\.?0+$/, '') : text} ${units[u]}`;
}
