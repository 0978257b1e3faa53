/**
 * The state of one running backup: its id, the chunk writer, the entries gathered so
 * far, counters, warnings, and the work to do once it is published (or abandoned).
 * backup.ts walks the sources and drives it; chain-backup.ts adds disks to it.
 */
import { randomBytes } from 'node:crypto';
import { checksumBlocks } from '../chain/block-checksums.js';
import type { ErrorCode } from '../errors.js';
import { DeltaDiskError, isDeltaDiskError, throwIfAborted } from '../errors.js';
import type { ChainEntry, Entry, Manifest } from '../format/manifest.js';
import { MAX_ENTRIES, ZERO_HASH } from '../format/repo-limits.js';
import type { FileSystem } from '../io/file-system.js';
import type { ChunkIndex } from './chunk-index.js';
import { PackWriter } from './pack-writer.js';
import type { Repository } from './repository.js';

export interface BackupWarning {
  readonly path: string;
  readonly message: string;
  readonly code: ErrorCode | undefined;
}

export interface BackupProgress {
  readonly bytesTotal: number;
  readonly bytesDone: number;
  readonly bytesRead: number;
  readonly bytesNew: number;
  readonly entries: number;
  readonly path: string;
}

export interface BackupOptions {
  readonly tags?: readonly string[];
  readonly host?: string;
  readonly user?: string;
  /** Read and chunk everything, count what would be added, write nothing. */
  readonly dryRun?: boolean;
  /** Which of a disk's own snapshots to back up besides its state at capture time (default 'none'). */
  readonly chainSnapshots?: 'none' | 'all' | readonly string[];
  /** Files to chunk as disk images (fixed, block-aligned chunks); default: by name (.raw, .img, -flat.vmdk …). */
  readonly isImage?: (path: string, size: number) => boolean;
  /** Compress chunks where it saves space (default true). */
  readonly compress?: boolean;
  /** The file system sources are read (and disks opened) through; default: the real one. */
  readonly sourceFs?: FileSystem;
  /** Paths a disk's base image may lie in, outside its directory. */
  readonly allowPaths?: readonly string[];
  readonly onProgress?: (p: BackupProgress) => void;
  readonly onWarning?: (w: BackupWarning) => void;
  /**
   * Aborting stops the backup at its next chunk, file or read (INTERRUPTED): nothing
   * is published, what it had written is abandoned as after any failure (prune
   * reclaims it), and a chain disk's own anchor is deleted. Once the manifest is
   * durable the backup completes.
   */
  readonly signal?: AbortSignal;
}

export interface BackupSummary {
  files: number;
  dirs: number;
  symlinks: number;
  chains: number;
  /** Special files (devices, FIFOs, sockets) skipped. */
  skipped: number;
  /** Logical bytes of the backup (file sizes, disk sizes). */
  bytes: number;
  /** Bytes actually read from the sources. */
  bytesRead: number;
  chunksNew: number;
  /** Raw bytes of new chunks. */
  bytesNew: number;
  /** Bytes those took in packs (after compression). */
  bytesStored: number;
  packs: number;
  indexFiles: number;
  warnings: number;
  /** The whole run, index loading to closing (the manifest holds the time to its commit). */
  durationMs: number;
}

export class BackupSession {
  readonly id = randomBytes(16).toString('hex');
  /** ISO time with microseconds: backups of one series sort in the order they ran. */
  readonly started = preciseNow();
  readonly repo: Repository;
  readonly index: ChunkIndex;
  readonly writer: PackWriter;
  readonly options: BackupOptions;
  readonly entries: Entry[] = [];
  readonly warnings: BackupWarning[] = [];
  readonly summary: BackupSummary = {
    files: 0, dirs: 0, symlinks: 0, chains: 0, skipped: 0, bytes: 0, bytesRead: 0,
    chunksNew: 0, bytesNew: 0, bytesStored: 0, packs: 0, indexFiles: 0, warnings: 0, durationMs: 0,
  };
  /** Run after the manifest is durable (failures there become warnings). */
  readonly afterCommit: (() => Promise<void>)[] = [];
  /** Run when the backup is abandoned. */
  readonly onAbort: (() => Promise<void>)[] = [];
  /** Run in every case, last (closing disks). */
  readonly cleanup: (() => Promise<void>)[] = [];
  /** Absolute paths not to descend into (the repository itself). */
  readonly skipPaths = new Set<string>();
  bytesTotal = 0;
  #bytesDone = 0;
  #lastProgress = 0;
  #previousChains: Promise<Map<string, string[]>> | undefined;
  readonly #manifests = new Map<string, Promise<Manifest | undefined>>();

  constructor(repo: Repository, index: ChunkIndex, options: BackupOptions) {
    this.repo = repo;
    this.index = index;
    this.options = options;
    this.writer = new PackWriter(repo.backend, index, {
      packSize: repo.config.packSize,
      compress: options.compress ?? true,
      dryRun: options.dryRun ?? false,
    });
  }

  get dryRun(): boolean {
    return this.options.dryRun === true;
  }

  /**
   * Throws INTERRUPTED once the backup's signal is aborted: called between chunks,
   * files and reads, so an abort ends the backup within one of them.
   */
  checkpoint(): void {
    throwIfAborted(this.options.signal, 'the backup was interrupted; nothing was published');
  }

  addEntry(e: Entry): void {
    this.checkpoint();
    if (this.entries.length >= MAX_ENTRIES) {
      throw new DeltaDiskError('LIMIT_EXCEEDED', `a backup holds at most ${MAX_ENTRIES} entries; back up fewer paths at a time`);
    }
    this.entries.push(e);
  }

  /**
   * Stores each of a batch of chunks (unless the repository has it), zeros too, and
   * returns their hashes in order: content-defined chunks, whose lists never name the
   * zero hash. Hashed on two threads, as `chunkHashes`; the chunks may be reused once
   * this resolves.
   */
  async storeChunks(chunks: readonly Buffer[]): Promise<Buffer[]> {
    const { hashes } = await checksumBlocks(chunks, { crc32: false, sha256: true });
    const out: Buffer[] = [];
    for (let i = 0; i < chunks.length; i++) out.push(await this.#store(chunks[i]!, hashes[i]!));
    return out;
  }

  /** Stores `data` under `hash`, its SHA-256 (computed by the caller). */
  async #store(data: Buffer, hash: Buffer): Promise<Buffer> {
    if (await this.writer.add(hash, data)) {
      this.summary.chunksNew++;
      this.summary.bytesNew += data.length;
    }
    return hash;
  }

  /**
   * The hash of each of a batch of chunks, in order: the reserved zero hash for
   * zeros (never stored), else the SHA-256 of one stored (unless the repository has
   * it). Hashed on two threads (block-checksums.ts): SHA-256 on the reading thread
   * alone was a third of a first backup's time. The chunks may be reused once this
   * resolves (what is stored has been copied into a pack).
   */
  async chunkHashes(chunks: readonly Buffer[]): Promise<Buffer[]> {
    const { hashes } = await checksumBlocks(chunks.map((c) => (isZero(c) ? null : c)), { crc32: false, sha256: true });
    const out: Buffer[] = [];
    for (let i = 0; i < chunks.length; i++) {
      const h = hashes[i];
      out.push(h === undefined ? ZERO_HASH : await this.#store(chunks[i]!, h));
    }
    return out;
  }

  warn(path: string, err: unknown): void {
    const w: BackupWarning = {
      path,
      message: err instanceof Error ? err.message : String(err),
      code: isDeltaDiskError(err) ? err.code : undefined,
    };
    this.warnings.push(w);
    this.summary.warnings++;
    this.options.onWarning?.(w);
  }

  /** Where the progress counts stand (see `rewindProgress`). */
  progressMark(): { readonly done: number; readonly read: number } {
    return { done: this.#bytesDone, read: this.summary.bytesRead };
  }

  /** Takes back what was counted since `mark`: a file read again from its start is counted once. */
  rewindProgress(mark: { readonly done: number; readonly read: number }): void {
    this.#bytesDone = mark.done;
    this.summary.bytesRead = mark.read;
  }

  /** Counts progress: `done` logical bytes dealt with, `read` of them actually read. */
  progress(path: string, done: number, read: number): void {
    this.checkpoint();
    this.#bytesDone += done;
    this.summary.bytesRead += read;
    const now = performance.now();
    if (this.options.onProgress === undefined || (now - this.#lastProgress < 100 && done !== 0 && this.#bytesDone < this.bytesTotal)) return;
    this.#lastProgress = now;
    this.options.onProgress({
      bytesTotal: Math.max(this.bytesTotal, this.#bytesDone),
      bytesDone: this.#bytesDone,
      bytesRead: this.summary.bytesRead,
      bytesNew: this.summary.bytesNew,
      entries: this.entries.length,
      path,
    });
  }

  /**
   * The latest backup holding disk `diskId` that no check has marked failed: the base
   * of an incremental backup of that disk.
   */
  async previousChain(diskId: string): Promise<{ backupId: string; entry: ChainEntry } | undefined> {
    const candidates = (await this.#scanPreviousChains()).get(diskId) ?? [];
    // Latest first; a manifest damaged since it was cataloged is passed over, as the
    // scan of every manifest did.
    for (const backupId of candidates) {
      let manifest = this.#manifests.get(backupId);
      if (manifest === undefined) {
        manifest = this.repo.loadManifest(backupId).catch((err: unknown) => {
          if (!isDeltaDiskError(err, 'BACKUP_NOT_FOUND')) this.warn(`backup ${backupId}`, err);
          return undefined;
        });
        this.#manifests.set(backupId, manifest);
      }
      const entry = (await manifest)?.entries.find((e): e is ChainEntry => e.type === 'chain' && e.chain.diskId === diskId);
      if (entry !== undefined) return { backupId, entry };
    }
    return undefined;
  }

  /**
   * Starts the scan `previousChain` looks in, unless it has started: a caller with
   * other work to wait on (taking a disk's anchor snapshot) overlaps the two. The
   * promise resolves when the scan has ended, however; a failure is reported by
   * `previousChain`.
   */
  prefetchPreviousChains(): Promise<void> {
    return this.#scanPreviousChains().then(
      () => undefined,
      () => undefined,
    );
  }

  /**
   * Scanned once per backup: disks backed up together share it. The backup's
   * cleanup waits for it, so a backup that fails before using it leaves nothing
   * reading the repository (or reporting warnings) after it has ended.
   */
  #scanPreviousChains(): Promise<Map<string, string[]>> {
    if (this.#previousChains === undefined) {
      const scan = this.#chainCandidates();
      this.#previousChains = scan;
      this.cleanup.push(() => scan.then(() => undefined, () => undefined));
    }
    return this.#previousChains;
  }

  /** For each chain disk, the backups holding it that no check marked failed, latest first. */
  async #chainCandidates(): Promise<Map<string, string[]>> {
    const failed = new Set(await this.repo.markedNames('verify'));
    // The latest manifest read for each disk is kept: it is most likely the base.
    const kept = new Map<string, Manifest>();
    const keep = (m: Manifest): void => {
      for (const e of m.entries) {
        if (e.type !== 'chain') continue;
        const cur = kept.get(e.chain.diskId);
        if (cur === undefined || isLater(m, cur)) kept.set(e.chain.diskId, m);
      }
    };
    const backups = await this.repo.catalogBackups((id, err) => this.warn(`backup ${id}`, err), keep);
    for (const m of new Set(kept.values())) this.#manifests.set(m.id, Promise.resolve(m));
    const byDisk = new Map<string, { id: string; time: string; end: string; order: number }[]>();
    let order = 0;
    for (const [id, b] of backups) {
      order++;
      if (failed.has(id)) continue;
      for (const diskId of new Set(b.disks)) {
        let list = byDisk.get(diskId);
        if (list === undefined) byDisk.set(diskId, (list = []));
        list.push({ id, time: b.time, end: b.end, order });
      }
    }
    const out = new Map<string, string[]>();
    for (const [diskId, list] of byDisk) {
      // Latest first; among equals, the first listed.
      list.sort((a, b) => (isLater(a, b) ? -1 : isLater(b, a) ? 1 : a.order - b.order));
      out.set(diskId, list.map((x) => x.id));
    }
    return out;
  }
}

/** Whether backup `a` is later than `b`: a later capture, or the same capture and a later end. */
function isLater(a: { readonly time: string; readonly end: string }, b: { readonly time: string; readonly end: string }): boolean {
  return a.time !== b.time ? a.time > b.time : a.end > b.end;
}

const ZEROS = Buffer.alloc(1024 * 1024);

export function isZero(data: Uint8Array): boolean {
  const b = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  for (let at = 0; at < b.length; at += ZEROS.length) {
    const n = Math.min(ZEROS.length, b.length - at);
    if (!b.subarray(at, at + n).equals(ZEROS.subarray(0, n))) return false;
  }
  return true;
}

/** A failure reading a source file (as opposed to writing the repository): a warning, not an error. */
export class SourceReadError extends Error {
  override readonly cause: unknown;
  constructor(cause: unknown) {
    super(cause instanceof Error ? cause.message : String(cause));
    this.cause = cause;
  }
}

/** The current time as ISO 8601 with microseconds (`…T06:40:00.123456Z`). */
export function preciseNow(): string {
  const ms = performance.timeOrigin + performance.now();
  const whole = Math.floor(ms);
  const micro = Math.min(999, Math.floor((ms - whole) * 1000));
  return `${new Date(whole).toISOString().slice(0, -1)}${String(micro).padStart(3, '0')}Z`;
}
