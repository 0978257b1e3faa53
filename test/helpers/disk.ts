/**
 * Small helpers shared by the Disk tests: file hashes, a fingerprint of a whole
 * directory to prove "nothing changed", and deterministic content.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

export { codeOf } from './errors.js';

export function sha256File(p: string): string {
  return createHash('sha256').update(fs.readFileSync(p)).digest('hex');
}

export function sha256(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

/** name → sha256 of every regular file in `dir` (not recursive). */
export function dirState(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of fs.readdirSync(dir).sort()) {
    const p = path.join(dir, name);
    if (fs.lstatSync(p).isFile()) out[name] = sha256File(p);
  }
  return out;
}

/** The delta files in `dir`, sorted. */
export function deltaFiles(dir: string): string[] {
  return fs.readdirSync(dir).filter((n) => n.endsWith('.delta')).sort();
}

/**
 * `n` pseudo-random bytes determined by `seed` (xorshift32): never all zero, and no
 * block of one pattern equals a block of another, so dedup does not kick in by accident.
 */
export function pattern(n: number, seed: number): Buffer {
  const b = Buffer.allocUnsafe(n);
  let x = (Math.imul(seed + 1, 2654435761) ^ 0x9e3779b9) >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    b[i] = x & 0xff;
  }
  return b;
}
