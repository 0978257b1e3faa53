/**
 * One file of this machine's cache directory (cache-dir.ts), such as a repository's
 * index cache or backup catalog: whatever it holds can be rebuilt, and its reader
 * checks it.
 *
 * What it guarantees:
 *  - reading never allocates more than the bound given, and never fails: a file that
 *    is absent, too large or unreadable is a miss (undefined);
 *  - writing replaces the file atomically (temporary name, rename) but does not sync
 *    it: a crash may leave the old content, the new, or none, never a mix; a write
 *    that fails (a read-only or full cache directory) is skipped, not an error.
 */
import path from 'node:path';
import { atomicReplace } from './atomic-replace.js';
import type { FileSystem } from './file-system.js';
import { makeDirs } from './make-dirs.js';
import { readUpTo } from './positional.js';

export class CacheFile {
  /** The cache directory, absolute. */
  readonly dir: string;
  readonly path: string;
  readonly #fs: FileSystem;

  constructor(fs: FileSystem, dir: string, name: string) {
    this.#fs = fs;
    this.dir = path.resolve(dir);
    this.path = path.join(this.dir, name);
  }

  /** The whole file, when it holds at most `maxBytes` (checked before allocating); undefined otherwise. */
  async read(maxBytes: number): Promise<Buffer | undefined> {
    try {
      const h = await this.#fs.open(this.path, 'read');
      try {
        const size = (await h.stat()).size;
        return size > maxBytes ? undefined : await readUpTo(h, 0, size);
      } finally {
        await h.close();
      }
    } catch {
      return undefined;
    }
  }

  /** Replaces the file with `bytes` (the directory made if needed, private); false when that failed. */
  async write(bytes: Uint8Array | readonly Uint8Array[]): Promise<boolean> {
    try {
      await makeDirs(this.#fs, this.dir, 0o700);
      await atomicReplace(this.#fs, this.path, bytes, { durable: false });
      return true;
    } catch {
      return false;
    }
  }
}
