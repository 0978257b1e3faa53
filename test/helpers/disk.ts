/**
 * Small helpers shared by the Disk tests: error codes of rejected promises, file
 * hashes, and a fingerprint of a whole directory to prove "nothing changed".
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { isDeltaDiskError } from '../../lib/errors.js';

/** The DeltaDiskError code `p` rejects with, 'ok' if it resolves; anything else is rethrown. */
export async function codeOf(p: Promise<unknown> | (() => unknown)): Promise<string> {
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (err) {
    if (isDeltaDiskError(err)) return err.code;
    throw err;
  }
  return 'ok';
}

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

/** A buffer of `n` bytes where byte i is (seed + i * 7) & 0xff: content that is never all zero or uniform. */
export function pattern(n: number, seed: number): Buffer {
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) b[i] = (seed + i * 7 + (i >> 12)) & 0xff;
  return b;
}
