/**
 * What each manifest of a repository says about when it was taken and which chain
 * disks it holds, cached on this machine between backups.
 *
 * An incremental chain backup builds on the latest good backup of the same disk.
 * Finding it meant reading every manifest of the repository, ~0.7 ms each in a fresh
 * process: a year of daily backups added a quarter of a second to every backup, more
 * than the incremental backup of a gigabyte disk itself. A manifest never changes
 * once written (forget removes it, nothing rewrites it), so what it says can be kept:
 * `<cache dir>/<repository id>.backups` (format/backup-catalog.ts). A backup then
 * reads the manifests the catalog does not know, and the one it builds on.
 *
 * When the catalog is used (and when not), as for the index cache (index-cache.ts):
 *  - it is keyed by the repository id; a backup it holds counts only while the
 *    repository lists its manifest, so forgotten backups drop out (names alone: a
 *    manifest is never rewritten, and listing names stats no file);
 *  - anything wrong with the file (absent, damaged, another repository) is a miss:
 *    every manifest is read, never an error;
 *  - the manifest a backup builds on is always read from the repository itself.
 * Writes are atomic (temporary name, rename) but not synced: a catalog lost to a
 * crash costs reading the manifests once.
 */
import { decodeBackupCatalog, encodeBackupCatalog, MAX_CATALOG_BACKUPS, MAX_CATALOG_BYTES, type CatalogedBackup } from '../format/backup-catalog.js';
import type { Manifest } from '../format/manifest.js';
import { CacheFile } from '../io/cache-file.js';
import type { FileSystem } from '../io/file-system.js';

export type { CatalogedBackup } from '../format/backup-catalog.js';

/** What the catalog keeps of manifest `m`, `size` bytes long. */
export function catalogEntry(m: Manifest, size: number): CatalogedBackup {
  const disks: string[] = [];
  for (const e of m.entries) if (e.type === 'chain') disks.push(e.chain.diskId);
  return { size, time: m.time, end: m.end, disks };
}

/** The name of a repository's catalog in the cache directory. */
export function catalogName(repoId: string): string {
  return `${repoId}.backups`;
}

export class BackupCatalog {
  readonly #file: CacheFile;
  readonly #repoId: string;

  constructor(fs: FileSystem, dir: string, repoId: string) {
    this.#file = new CacheFile(fs, dir, catalogName(repoId));
    this.#repoId = repoId;
  }

  get file(): string {
    return this.#file.path;
  }

  /** The backups the catalog holds, by id; empty when there is no usable catalog. */
  async load(): Promise<Map<string, CatalogedBackup>> {
    const bytes = await this.#file.read(MAX_CATALOG_BYTES);
    if (bytes === undefined) return new Map();
    try {
      const c = decodeBackupCatalog(bytes, this.#file.path);
      return c.repo === this.#repoId ? new Map(c.backups) : new Map();
    } catch {
      return new Map();
    }
  }

  /** Stores `backups`. Best effort: a catalog that cannot be written is not an error. */
  async save(backups: ReadonlyMap<string, CatalogedBackup>): Promise<boolean> {
    if (backups.size > MAX_CATALOG_BACKUPS) return false;
    let bytes: Buffer;
    try {
      bytes = encodeBackupCatalog({ repo: this.#repoId, backups });
    } catch {
      return false;
    }
    return bytes.length <= MAX_CATALOG_BYTES && (await this.#file.write(bytes));
  }
}
