/**
 * A backup repository: opening, locking, and reading what it holds.
 *
 * The write order is packs → index → manifest, each durable before the next
 * (pack-writer.ts, backup.ts); readers go the other way: a manifest first, then the
 * index, then the packs, so anything a manifest names was durable before the
 * manifest was. Opening takes a lock (repo-lock.ts) unless told not to; everything
 * read is bounded and verified (frames, names, hashes) before use.
 */
import type { VmConsistency } from '../format/vm-record.js';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { DeltaDiskError, isDeltaDiskError } from '../errors.js';
import { HEX32 } from '../format/framed.js';
import { decodeIndexFile } from '../format/index-file.js';
import { PACK_ENTRY_SIZE } from '../format/pack-header.js';
import { decodeManifest, type Manifest } from '../format/manifest.js';
import { decodePrunePlan, type PrunePlan } from '../format/prune-plan.js';
import { decodeRepoConfig, DEFAULT_FIXED_CHUNK, DEFAULT_PACK_SIZE, encodeRepoConfig, type RepoConfig } from '../format/repo-config.js';
import { CDC_AVG, CDC_MAX, CDC_MIN, MAX_CONFIG_BYTES, MAX_INDEX_FILE, MAX_MANIFEST_BYTES, MAX_PLAN_BYTES, MAX_VERIFY_BYTES } from '../format/repo-limits.js';
import type { LockKind } from '../format/repo-lock.js';
import { decodeVerifyRecord, type VerifyRecord } from '../format/verify-record.js';
import type { FileSystem } from '../io/file-system.js';
import { nodeFileSystem } from '../io/node-file-system.js';
import type { StorageBackend, StoredFile } from './backend.js';
import { ChunkIndex, PackFlag } from './chunk-index.js';
import { BackupCatalog, catalogEntry, type CatalogedBackup } from './backup-catalog.js';
import { avoidDigest, IndexCache, type CacheHit } from './index-cache.js';
import { MAX_VOUCHED } from '../format/index-cache.js';
import { decompressChunk } from './compression.js';
import { LocalBackend } from './local-backend.js';
import { sha256 } from './pack-writer.js';
import { RepoLock } from './repo-lock.js';

/** Index entries reserved up front at most (≈ 60 MiB of index; 64 GiB of 64 KiB chunks). */
const RESERVE_ENTRIES_MAX = 1 << 20;

export interface InitRepositoryOptions {
  /** The file system; default: the real one. */
  readonly fs?: FileSystem;
  /** Chunk size for disk images (a power of two, 4 KiB … 8 MiB; default 1 MiB). */
  readonly fixedChunkSize?: number;
  /** Pack size target (default 16 MiB). */
  readonly packSize?: number;
  /** Content-defined chunk sizes (default 256 KiB / 1 MiB / 8 MiB). */
  readonly cdc?: { readonly min: number; readonly avg: number; readonly max: number };
}

export interface OpenRepositoryOptions {
  /** The file system; default: the real one. Fault and power-loss harnesses pass theirs. */
  readonly fs?: FileSystem;
  /** The lock to take (default 'shared'); false for none (read-only inspection). */
  readonly lock?: LockKind | false;
  /** What the lock is for, shown to whoever it blocks. */
  readonly purpose?: string;
  /** Keep trying to lock this long (ms). */
  readonly retryLockMs?: number;
  /**
   * A directory for this machine's cache of the repository's index (index-cache.ts),
   * which backups load instead of every index file and update when they end. Default:
   * none (the library writes nothing outside the repository unless asked; the CLI
   * passes defaultCacheDir() unless --no-cache).
   */
  readonly cacheDir?: string;
}

export interface BackupInfo {
  readonly id: string;
  readonly time: string;
  readonly end: string;
  readonly host: string;
  readonly user: string;
  readonly tags: readonly string[];
  readonly paths: readonly string[];
  readonly summary: Readonly<Record<string, number>>;
  readonly entries: number;
  /** A check found this backup damaged (verify/<id> exists). */
  readonly failed: boolean;
  /** For backups of a VM directory: the VM and how consistent its capture is. */
  readonly vm: { readonly name: string | null; readonly consistency: VmConsistency; readonly freezeWindowMs: number; readonly hooks: number } | null;
}

/** Which backups `latest` may name (restic's --host, --path, --tag); all given must hold. */
export interface BackupFilter {
  readonly host?: string | undefined;
  /** Every one of these is among the backup's source paths. */
  readonly paths?: readonly string[] | undefined;
  /** The backup carries every one of these tags. */
  readonly tags?: readonly string[] | undefined;
  /** A VM backup (true), or a backup of the VM of this name. */
  readonly vm?: boolean | string | undefined;
}

export function matchesFilter(b: BackupInfo, f: BackupFilter): boolean {
  if (f.host !== undefined && b.host !== f.host) return false;
  if (f.paths !== undefined && !f.paths.every((p) => b.paths.includes(p))) return false;
  if (f.tags !== undefined && !f.tags.every((t) => b.tags.includes(t))) return false;
  if (f.vm === true && b.vm === null) return false;
  if (typeof f.vm === 'string' && b.vm?.name !== f.vm) return false;
  return true;
}

function describeFilter(f: BackupFilter): string {
  const parts = [
    ...(f.host === undefined ? [] : [`of host ${f.host}`]),
    ...(f.paths === undefined || f.paths.length === 0 ? [] : [`of ${f.paths.join(', ')}`]),
    ...(f.tags === undefined || f.tags.length === 0 ? [] : [`tagged ${f.tags.join(', ')}`]),
    ...(f.vm === true ? ['of a VM'] : typeof f.vm === 'string' ? [`of VM ${f.vm}`] : []),
  ];
  return parts.length === 0 ? '' : ` ${parts.join(' ')}`;
}

export interface LoadIndexOptions {
  /** Called for a damaged index file, which is then skipped; without it, loading fails. */
  readonly onDamaged?: (name: string, err: DeltaDiskError) => void;
  /** Start from the index cache when the repository was opened with one (backups only: see index-cache.ts). */
  readonly useCache?: boolean;
  /**
   * Take a prune plan that cannot be read as none (no pack condemned): for check,
   * which reports it, and prune, which replaces it. Anything else fails on it: a
   * backup must know which packs a prune is deleting.
   */
  readonly ignoreDamagedPlan?: boolean;
}

/** What a loaded index was built from, for updating the cache after a backup. */
interface IndexBasis {
  readonly files: readonly StoredFile[];
  readonly avoid: Buffer;
  /** The cache held exactly this index already. */
  readonly cached: boolean;
  /** The backups the cache vouched for (index-cache.ts). */
  readonly vouched: readonly string[];
}

function byTime(a: { time: string; end: string; id: string }, b: { time: string; end: string; id: string }): number {
  const cmp = (x: string, y: string): number => (x < y ? -1 : x > y ? 1 : 0);
  return cmp(a.time, b.time) || cmp(a.end, b.end) || cmp(a.id, b.id);
}

export class Repository {
  readonly location: string;
  readonly config: RepoConfig;
  readonly backend: StorageBackend;
  readonly fs: FileSystem;
  readonly lock: RepoLock | undefined;
  readonly #cache: IndexCache | undefined;
  readonly #catalog: BackupCatalog | undefined;
  readonly #basis = new WeakMap<ChunkIndex, IndexBasis>();
  #closed = false;

  private constructor(location: string, config: RepoConfig, backend: StorageBackend, fs: FileSystem, lock: RepoLock | undefined, cacheDir: string | undefined) {
    this.location = location;
    this.config = config;
    this.backend = backend;
    this.fs = fs;
    this.lock = lock;
    this.#cache = cacheDir === undefined ? undefined : new IndexCache(fs, cacheDir, config.id);
    this.#catalog = cacheDir === undefined ? undefined : new BackupCatalog(fs, cacheDir, config.id);
  }

  /**
   * Creates an empty repository at `location` (a new or empty directory).
   * @throws ALREADY_EXISTS, INVALID_ARGUMENT, NOT_FOUND (parent directory)
   */
  static async init(location: string, options: InitRepositoryOptions = {}): Promise<RepoConfig> {
    const fs = options.fs ?? nodeFileSystem;
    const root = path.resolve(location);
    const cdc = options.cdc ?? { min: CDC_MIN, avg: CDC_AVG, max: CDC_MAX };
    const config: RepoConfig = {
      id: randomBytes(16).toString('hex'),
      created: new Date().toISOString(),
      chunker: { gearSeed: randomBytes(16).toString('hex'), min: cdc.min, avg: cdc.avg, max: cdc.max },
      fixedChunkSize: options.fixedChunkSize ?? DEFAULT_FIXED_CHUNK,
      packSize: options.packSize ?? DEFAULT_PACK_SIZE,
    };
    // Validate by round trip: the same rules as every later open.
    try {
      decodeRepoConfig(encodeRepoConfig(config));
    } catch (err) {
      throw new DeltaDiskError('INVALID_ARGUMENT', `invalid repository parameters: ${(err as Error).message}`);
    }
    const parent = path.dirname(root);
    if (!(await fs.stat(parent).then((s) => s.isDirectory, () => false))) {
      throw new DeltaDiskError('NOT_FOUND', `directory ${parent} does not exist`, { path: parent });
    }
    const existing = await fs.lstat(root).catch(() => undefined);
    if (existing !== undefined) {
      if (!existing.isDirectory) throw new DeltaDiskError('ALREADY_EXISTS', `${root} exists and is not a directory`, { path: root });
      if ((await fs.readdir(root)).length > 0) throw new DeltaDiskError('ALREADY_EXISTS', `${root} is not empty`, { path: root });
    }
    const backend = new LocalBackend(fs, root);
    await backend.init();
    await backend.createConfig(encodeRepoConfig(config));
    await backend.close();
    return config;
  }

  /**
   * Opens the repository at `location` and takes the lock asked for.
   * @throws REPO_NOT_FOUND, REPO_CORRUPT, UNSUPPORTED_VERSION, LOCKED, LOCK_INVALID
   */
  static async open(location: string, options: OpenRepositoryOptions = {}): Promise<Repository> {
    const fs = options.fs ?? nodeFileSystem;
    const root = path.resolve(location);
    const backend = new LocalBackend(fs, root);
    const bytes = await backend.readConfig(MAX_CONFIG_BYTES);
    if (bytes === undefined) throw new DeltaDiskError('REPO_NOT_FOUND', `no backup repository at ${root}`, { path: root });
    const config = decodeRepoConfig(bytes, path.join(root, 'config'));
    const kind = options.lock ?? 'shared';
    const lock = kind === false ? undefined : await RepoLock.acquire(backend, kind, options.purpose ?? kind, { retryMs: options.retryLockMs ?? 0 });
    return new Repository(root, config, backend, fs, lock, options.cacheDir);
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Releases the lock and cached handles; idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    try {
      await this.lock?.release();
    } finally {
      await this.backend.close();
    }
  }

  assertOpen(): void {
    if (this.#closed) throw new DeltaDiskError('NOT_OPEN', `repository ${this.location} is closed`);
  }

  /** Fails unless the repository was opened with one of these locks. */
  assertLocked(...kinds: LockKind[]): RepoLock {
    this.assertOpen();
    if (this.lock === undefined || !kinds.includes(this.lock.kind)) {
      throw new DeltaDiskError('INVALID_ARGUMENT', `this operation needs the repository opened with a ${kinds.join(' or ')} lock`);
    }
    return this.lock;
  }

  // ---------------------------------------------------------------- manifests

  async backupIds(): Promise<string[]> {
    this.assertOpen();
    return this.backend.listNames('snapshot');
  }

  /** @throws BACKUP_NOT_FOUND, REPO_CORRUPT */
  async loadManifest(id: string): Promise<Manifest> {
    return (await this.#readManifest(id)).manifest;
  }

  /** Manifest `id` and its size in bytes. @throws BACKUP_NOT_FOUND, REPO_CORRUPT */
  async #readManifest(id: string): Promise<{ manifest: Manifest; size: number }> {
    this.assertOpen();
    if (!HEX32.test(id)) throw new DeltaDiskError('BACKUP_NOT_FOUND', `no backup ${JSON.stringify(id)}`);
    let bytes: Buffer;
    try {
      bytes = await this.backend.read('snapshot', id, MAX_MANIFEST_BYTES);
    } catch (err) {
      if (isDeltaDiskError(err, 'NOT_FOUND')) throw new DeltaDiskError('BACKUP_NOT_FOUND', `no backup ${id} in ${this.location}`);
      throw err;
    }
    return { manifest: decodeManifest(bytes, id, path.join(this.location, 'snapshots', id)), size: bytes.length };
  }

  /**
   * When each backup was taken and which chain disks it holds, by id in listing
   * order: from this machine's backup catalog (backup-catalog.ts) where it knows the
   * manifest, else read from the manifest (and then cataloged, and handed to
   * `onRead`). A manifest that cannot be read is reported through `onDamaged` and
   * left out.
   */
  async catalogBackups(onDamaged: (id: string, err: unknown) => void, onRead?: (m: Manifest) => void): Promise<Map<string, CatalogedBackup>> {
    this.assertOpen();
    const known = (await this.#catalog?.load()) ?? new Map<string, CatalogedBackup>();
    const out = new Map<string, CatalogedBackup>();
    let learned = false;
    // By name alone: a manifest is never rewritten, and listing names looks at no file.
    for (const id of await this.backend.listNames('snapshot')) {
      let c = known.get(id);
      if (c === undefined) {
        try {
          const { manifest, size } = await this.#readManifest(id);
          c = catalogEntry(manifest, size);
          onRead?.(manifest);
        } catch (err) {
          if (!isDeltaDiskError(err, 'BACKUP_NOT_FOUND')) onDamaged(id, err);
          continue;
        }
        learned = true;
      }
      out.set(id, c);
    }
    if (learned || out.size !== known.size) await this.#catalog?.save(out);
    return out;
  }

  /**
   * Every backup, oldest first. A manifest that cannot be read is reported through
   * `onDamaged` (and skipped) when given; otherwise listing fails.
   */
  async listBackups(onDamaged?: (id: string, err: DeltaDiskError) => void): Promise<BackupInfo[]> {
    const failed = new Set(await this.markedNames('verify'));
    const out: BackupInfo[] = [];
    for (const id of await this.backupIds()) {
      let m: Manifest;
      try {
        m = await this.loadManifest(id);
      } catch (err) {
        if (isDeltaDiskError(err, 'BACKUP_NOT_FOUND')) continue; // forgotten meanwhile
        if (onDamaged !== undefined && isDeltaDiskError(err)) {
          onDamaged(id, err);
          continue;
        }
        throw err;
      }
      const vm = m.vm === undefined ? null : { name: m.vm.name, consistency: m.vm.consistency, freezeWindowMs: m.vm.freezeWindowMs, hooks: m.vm.quiesce.hooks.length };
      out.push({ id, time: m.time, end: m.end, host: m.host, user: m.user, tags: m.tags, paths: m.paths, summary: m.summary, entries: m.entries.length, failed: failed.has(id), vm });
    }
    return out.sort(byTime);
  }

  /**
   * A backup id from what a user typed: `latest` (the newest backup `filter`
   * admits), a full id, or a unique prefix of at least 4 hex digits (`filter` does
   * not apply: an id names one backup).
   * @throws BACKUP_NOT_FOUND, INVALID_ARGUMENT (ambiguous prefix)
   */
  async resolveBackup(spec: string, filter: BackupFilter = {}): Promise<string> {
    this.assertOpen();
    if (spec === 'latest') {
      const all = (await this.listBackups()).filter((b) => matchesFilter(b, filter));
      const last = all[all.length - 1];
      if (last === undefined) throw new DeltaDiskError('BACKUP_NOT_FOUND', `${this.location} holds no backups${describeFilter(filter)}`);
      return last.id;
    }
    if (!/^[0-9a-f]{4,32}$/.test(spec)) throw new DeltaDiskError('BACKUP_NOT_FOUND', `${JSON.stringify(spec)} is not a backup id`);
    const matches = (await this.backupIds()).filter((id) => id.startsWith(spec));
    if (matches.length === 0) throw new DeltaDiskError('BACKUP_NOT_FOUND', `no backup ${spec} in ${this.location}`);
    if (matches.length > 1) throw new DeltaDiskError('INVALID_ARGUMENT', `backup id prefix ${spec} is ambiguous (${matches.length} backups)`);
    return matches[0]!;
  }

  // ---------------------------------------------------------------- plan, verification records

  async readPlan(): Promise<PrunePlan | undefined> {
    this.assertOpen();
    if ((await this.backend.size('plan', 'prune')) === undefined) return undefined;
    try {
      return decodePrunePlan(await this.backend.read('plan', 'prune', MAX_PLAN_BYTES), path.join(this.location, 'plans', 'prune'));
    } catch (err) {
      if (isDeltaDiskError(err, 'NOT_FOUND')) return undefined;
      if (isDeltaDiskError(err, 'REPO_CORRUPT')) throw new DeltaDiskError('REPO_CORRUPT', `${err.message} (a damaged prune plan: \`deltadisk prune\` replaces it)`, { path: path.join(this.location, 'plans', 'prune') });
      throw err;
    }
  }

  /**
   * The backups (`verify`) or packs (`damage`) a record marks: its mere presence is
   * the mark, so a name held by a link or a directory (which no repository writes,
   * and `listNames` leaves out) marks too. Never trusted less for being odd.
   */
  markedNames(kind: 'verify' | 'damage'): Promise<string[]> {
    return this.backend.listNames(kind, { anyType: true });
  }

  async verifyRecords(): Promise<Map<string, VerifyRecord>> {
    this.assertOpen();
    const out = new Map<string, VerifyRecord>();
    for (const name of await this.markedNames('verify')) {
      try {
        const r = decodeVerifyRecord(await this.backend.read('verify', name, MAX_VERIFY_BYTES), path.join(this.location, 'verify', name));
        if (r.backup === name) out.set(name, r);
      } catch (err) {
        if (isDeltaDiskError(err, 'NOT_FOUND')) continue;
        // An unreadable record still says "this backup failed": never trust it as a base.
        out.set(name, { backup: name, time: '', problems: [(err as Error).message] });
      }
    }
    return out;
  }

  // ---------------------------------------------------------------- index and blobs

  /**
   * Loads every index file into a fresh in-memory index. Packs condemned by a prune
   * plan or with a damage record are flagged, so backups avoid them.
   */
  async loadIndex(options: LoadIndexOptions = {}): Promise<ChunkIndex> {
    this.assertOpen();
    // A prune replaces index files by writing the new ones before deleting the old:
    // if a file we listed is gone, listing again finds its replacement.
    for (let attempt = 0; ; attempt++) {
      const index = await this.#loadIndexOnce(options, attempt < 4);
      if (index !== undefined) return index;
    }
  }

  async #loadIndexOnce(options: LoadIndexOptions, retry: boolean): Promise<ChunkIndex | undefined> {
    const plan = await this.readPlan().catch((err: unknown) => {
      if (options.ignoreDamagedPlan === true && isDeltaDiskError(err, 'REPO_CORRUPT')) return undefined;
      throw err;
    });
    const condemned = new Set(plan?.condemned ?? []);
    const bad = new Set(await this.markedNames('damage'));
    // Only a load that may use the cache is keyed and remembered for it.
    const cache = options.useCache === true ? this.#cache : undefined;
    const avoid = cache === undefined ? undefined : avoidDigest(condemned, bad);
    let listed: StoredFile[];
    let hit: CacheHit | undefined;
    if (cache === undefined) {
      listed = await this.backend.list('index');
    } else {
      // The cache knows the sizes of the files it covers: only the others are looked at.
      const names = await this.backend.listNames('index');
      hit = await cache.load(names, avoid!);
      if (hit === undefined) {
        listed = await this.backend.list('index');
      } else {
        listed = [];
        for (const name of names) {
          const size = hit.covered.get(name) ?? (await this.backend.size('index', name));
          if (size !== undefined) listed.push({ name, size });
          else if (retry) return undefined;
        }
      }
    }
    const index = hit?.index ?? new ChunkIndex();
    const toRead = hit === undefined ? listed : listed.filter((f) => !hit.covered.has(f.name));
    // Every entry takes PACK_ENTRY_SIZE bytes of its index file: the files' sizes
    // bound the entry count, so the index is sized once instead of rehashed as it
    // grows. Capped (sizes come from disk): past the cap it grows by doubling.
    const bytes = toRead.reduce((n, f) => n + Math.min(f.size, MAX_INDEX_FILE), 0);
    index.reserve(Math.min(RESERVE_ENTRIES_MAX, Math.floor(bytes / PACK_ENTRY_SIZE)));
    const skipped = new Set<string>();
    for (const f of toRead) {
      const where = path.join(this.location, 'index', f.name);
      let packs;
      try {
        packs = decodeIndexFile(await this.backend.read('index', f.name, MAX_INDEX_FILE), f.name, where);
      } catch (err) {
        if (isDeltaDiskError(err, 'NOT_FOUND')) {
          if (retry) return undefined;
          skipped.add(f.name);
          continue;
        }
        if (options.onDamaged !== undefined && isDeltaDiskError(err)) {
          options.onDamaged(f.name, err);
          skipped.add(f.name);
          continue;
        }
        throw err;
      }
      for (const p of packs) {
        const flags = (condemned.has(p.name) ? PackFlag.CONDEMNED : 0) | (bad.has(p.name) ? PackFlag.BAD : 0);
        index.addPack(p.name, p.size, p.tail, flags, where);
      }
    }
    if (avoid !== undefined) {
      this.#basis.set(index, { files: listed.filter((f) => !skipped.has(f.name)), avoid, cached: hit !== undefined && toRead.length === 0, vouched: hit?.vouched ?? [] });
    }
    return index;
  }

  /**
   * Stores `index` (loaded by loadIndex, then extended by a backup that wrote the
   * index files `written`) in the index cache, when the repository has one and the
   * cache does not hold it already. `published`, a backup whose every chunk `index`
   * holds, usable (the one that just extended it), is vouched for. Best effort: false
   * when nothing was stored.
   */
  async saveIndexCache(index: ChunkIndex, written: readonly StoredFile[], published?: string): Promise<boolean> {
    const basis = this.#basis.get(index);
    if (this.#cache === undefined || basis === undefined) return false;
    if (basis.cached && written.length === 0 && (published === undefined || basis.vouched.includes(published))) return false;
    const files = new Map(basis.files.map((f) => [f.name, f]));
    for (const f of written) files.set(f.name, f);
    const vouched = published === undefined ? basis.vouched : [published, ...basis.vouched.filter((id) => id !== published)].slice(0, MAX_VOUCHED);
    const saved = await this.#cache.save(index, [...files.values()], basis.avoid, vouched);
    if (saved) this.#basis.set(index, { files: [...files.values()], avoid: basis.avoid, cached: true, vouched });
    return saved;
  }

  /**
   * Whether every chunk of backup `id` is known to be in `index`, usable, without
   * looking them up: the index came from a cache that vouches for it (index-cache.ts).
   */
  vouchesFor(index: ChunkIndex, id: string): boolean {
    return this.#basis.get(index)?.vouched.includes(id) === true;
  }

  /**
   * The raw content of blob `id` of `index`, verified against its hash.
   * @throws REPO_CORRUPT (damaged data), NOT_FOUND (missing pack)
   */
  async readBlob(index: ChunkIndex, id: number): Promise<Buffer> {
    const pack = index.packName(index.packOf(id));
    const stored = await this.backend.readRange('pack', pack, index.offsetOf(id), index.storedLengthOf(id));
    return this.decodeBlob(index, id, stored);
  }

  /** Decompresses and verifies the stored bytes of blob `id`. */
  async decodeBlob(index: ChunkIndex, id: number, stored: Buffer): Promise<Buffer> {
    const pack = index.packName(index.packOf(id));
    const hash = index.hashOf(id);
    const what = `blob ${hash.toString('hex').slice(0, 16)}… in pack ${pack.slice(0, 16)}…`;
    const raw = await decompressChunk(stored, index.compressionOf(id), index.rawLengthOf(id), what);
    if (!sha256(raw).equals(hash)) {
      throw new DeltaDiskError('REPO_CORRUPT', `${what} is damaged: its content does not match its hash`, {
        path: path.join(this.location, 'packs', pack.slice(0, 2), pack),
        offset: index.offsetOf(id),
      });
    }
    return raw;
  }
}
