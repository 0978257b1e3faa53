/**
 * A repository's chunk index, cached on this machine between backups.
 *
 * Loading the index means decoding every index file and linking every entry into
 * the hash table: for a 1 GiB disk's 16k chunks, cold, that is most of the index's
 * ~25 ms and a tenth of an incremental backup; it grows with the repository. A
 * backup that ends well stores the index it ended with as columns
 * (format/index-cache.ts) in `<cache dir>/<repository id>.index`; the next backup
 * of that repository loads the columns and reads only the index files the cache
 * does not cover.
 *
 * When the cache is used (and when not):
 *  - every index file it was built from must still be listed (index files are named
 *    by their content's hash, so the name stands for the content, and listing names
 *    stats no file: a repository of a year of daily backups holds hundreds); files
 *    listed beyond those are read as usual. If one is gone (a prune replaced it), the
 *    cache is not used: it may name packs that are gone.
 *  - the packs condemned by a prune plan and marked bad by a check must be the ones
 *    it was built under (entry preference depends on them);
 *  - the frame's SHA-256 must match and the columns must fit together
 *    (ChunkIndex.fromColumns); anything else is a miss, never an error.
 * It also vouches for the backups that stored it: every chunk of such a backup was
 * in the index, usable, when the cache was stored. That holds as long as the cache
 * is used at all (no index file it covers is gone, the condemned and bad packs are
 * the ones it was built under: nothing a backup reuses can have become unusable), so
 * an incremental backup building on such a backup reuses its unchanged chunks
 * without looking each one up (16k lookups per GiB of disk, ~6 ms a page in a fresh
 * process).
 * Only backups use it: check, prune and restore read the index files themselves, so
 * the cache can cost a backup at most a chunk it believes stored while the index
 * file naming it was damaged after the cache was built, which `check` reports.
 *
 * Writes are atomic (temporary name, rename) but not synced: a cache lost or torn by
 * a crash fails its checksum or is simply absent, and the index files are read.
 */
import { createHash } from 'node:crypto';
import path from 'node:path';
import { CacheFile } from '../io/cache-file.js';
import type { FileSystem } from '../io/file-system.js';
import { CACHE_USABLE, decodeIndexCache, indexCacheParts, type CachedIndexFile } from '../format/index-cache.js';
import { PACK_ENTRY_SIZE } from '../format/pack-header.js';
import { MAX_INDEX_FILE } from '../format/repo-limits.js';
import { catalogName } from './backup-catalog.js';
import { ChunkIndex } from './chunk-index.js';

/** A repository's cache unused this long is removed by the next save of another. */
const STALE_DAYS = 30;
const DAY_MS = 24 * 60 * 60 * 1000;

/** Bytes of cache per index entry at most (columns and table), plus room for the rest. */
const CACHE_BYTES_PER_ENTRY = 96;
const CACHE_SLACK_BYTES = 4 * 1024 * 1024;

/** The digest the cache is keyed on for the packs to avoid (condemned, bad). */
export function avoidDigest(condemned: Iterable<string>, bad: Iterable<string>): Buffer {
  const h = createHash('sha256');
  for (const n of [...condemned].sort()) h.update(`c${n}\n`);
  for (const n of [...bad].sort()) h.update(`b${n}\n`);
  return h.digest();
}

export interface CacheHit {
  readonly index: ChunkIndex;
  /** The index files the cached index already holds: name → size. */
  readonly covered: ReadonlyMap<string, number>;
  /** The backups whose every chunk the cached index holds, usable (latest first). */
  readonly vouched: readonly string[];
}

export class IndexCache {
  readonly #file: CacheFile;
  readonly #fs: FileSystem;
  readonly #repoId: string;

  constructor(fs: FileSystem, dir: string, repoId: string) {
    this.#file = new CacheFile(fs, dir, `${repoId}.index`);
    this.#fs = fs;
    this.#repoId = repoId;
  }

  get file(): string {
    return this.#file.path;
  }

  /**
   * The cached index, when it may stand for the index files named `listed` under
   * the marks `avoid`; undefined otherwise (absent, stale, damaged, or built under
   * other marks).
   */
  async load(listed: readonly string[], avoid: Buffer): Promise<CacheHit | undefined> {
    if (!CACHE_USABLE) return undefined;
    // What `listed.length` index files could hold at most (the file is read at its own size).
    const maxBytes = listed.length * (Math.floor(MAX_INDEX_FILE / PACK_ENTRY_SIZE) * CACHE_BYTES_PER_ENTRY + 64) + CACHE_SLACK_BYTES;
    const bytes = await this.#file.read(maxBytes);
    if (bytes === undefined) return undefined;
    try {
      const c = decodeIndexCache(bytes, maxBytes, this.#file.path);
      if (c.repo !== this.#repoId || !c.avoid.equals(avoid)) return undefined;
      const names = new Set(listed);
      if (!c.files.every((f) => names.has(f.name))) return undefined;
      return { index: ChunkIndex.fromColumns(c.columns), covered: new Map(c.files.map((f) => [f.name, f.size])), vouched: c.vouched };
    } catch {
      return undefined;
    }
  }

  /**
   * Stores `index`, built from the index files `files` under the marks `avoid`,
   * vouching for the backups `vouched` (see the file comment).
   * Best effort: a cache that cannot be written is not an error of the backup.
   */
  async save(index: ChunkIndex, files: readonly CachedIndexFile[], avoid: Buffer, vouched: readonly string[] = []): Promise<boolean> {
    if (!CACHE_USABLE) return false;
    let bytes: Uint8Array[];
    try {
      bytes = indexCacheParts({ repo: this.#repoId, avoid, files, vouched, columns: index.columns() });
    } catch {
      return false;
    }
    if (!(await this.#file.write(bytes))) return false;
    await this.#forgetStale().catch(() => undefined);
    return true;
  }

  /**
   * Removes the index caches and backup catalogs (backup-catalog.ts) of
   * repositories no backup from here has used for STALE_DAYS (moved or deleted ones,
   * most likely), and temporaries left by a crash, as restic does with its caches. A
   * cache removed too eagerly costs one full index load.
   */
  async #forgetStale(): Promise<void> {
    const now = Date.now();
    for (const name of await this.#fs.readdir(this.#file.dir)) {
      const own = name === path.basename(this.#file.path) || name === catalogName(this.#repoId);
      const cache = /^[0-9a-f]{32}\.(index|backups)$/.test(name);
      const temp = /^[0-9a-f]{32}\.(index|backups)\.tmp-/.test(name);
      if (own || !(cache || temp)) continue;
      const p = path.join(this.#file.dir, name);
      const st = await this.#fs.lstat(p).catch(() => undefined);
      if (st === undefined || !st.isFile) continue;
      const age = now - st.mtimeMs;
      if (age > (cache ? STALE_DAYS : 1) * DAY_MS) await this.#fs.unlink(p).catch(() => undefined);
    }
  }
}
