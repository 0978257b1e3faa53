/**
 * Helpers for repository tests: trees of files on disk, comparing them, and opening
 * repositories with the right lock.
 */
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { Repository, type LockKind } from '../../lib/index.js';

export function sha(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

/** Writes `files` (relative path → content) under `dir`. */
export function writeTree(dir: string, files: Record<string, Uint8Array | string>): void {
  for (const [rel, content] of Object.entries(files)) {
    const p = path.join(dir, rel);
    fs.mkdirSync(path.dirname(p), { recursive: true });
    fs.writeFileSync(p, content);
  }
}

/** Every entry under `dir`: relative path → 'dir' | 'link:<target>' | sha of the content, plus mode. */
export function snapshotTree(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (p: string, rel: string): void => {
    for (const name of fs.readdirSync(p).sort()) {
      const abs = path.join(p, name);
      const r = rel === '' ? name : `${rel}/${name}`;
      const st = fs.lstatSync(abs);
      const mode = (st.mode & 0o777).toString(8);
      if (st.isSymbolicLink()) out[r] = `link:${fs.readlinkSync(abs)}`;
      else if (st.isDirectory()) {
        out[r] = `dir:${mode}`;
        walk(abs, r);
      } else out[r] = `file:${mode}:${st.size}:${sha(fs.readFileSync(abs))}`;
    }
  };
  walk(dir, '');
  return out;
}

export async function openRepo(dir: string, lock: LockKind | false = 'shared', purpose = 'test'): Promise<Repository> {
  return Repository.open(dir, { lock, purpose });
}

export async function withRepo<T>(dir: string, lock: LockKind | false, fn: (r: Repository) => Promise<T>): Promise<T> {
  const r = await openRepo(dir, lock);
  try {
    return await fn(r);
  } finally {
    await r.close();
  }
}

export function randomData(n: number): Buffer {
  return randomBytes(n);
}

/** Bytes that compress well but do not repeat exactly (so they are not one deduplicated chunk). */
export function textData(n: number, seed = 1): Buffer {
  const words = ['alpha', 'beta', 'gamma', 'delta', 'disk', 'chain', 'backup', 'restore', 'snapshot', 'block'];
  let x = seed;
  const parts: string[] = [];
  let len = 0;
  while (len < n) {
    x = (x * 1103515245 + 12345) >>> 0;
    const w = `${words[x % words.length]!}${x % 97} `;
    parts.push(w);
    len += w.length;
  }
  return Buffer.from(parts.join('')).subarray(0, n);
}
