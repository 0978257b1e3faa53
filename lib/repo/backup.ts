/**
 * Backing up files, directories and disks into a repository.
 *
 * Sources are walked depth first, directories before their contents, names in code
 * point order. Regular files are chunked (fixed, block-aligned chunks for disk
 * images; FastCDC for the rest), chunks the repository lacks are packed, and chunk
 * lists recorded; a `*.chain` descriptor is backed up as a disk (chain-backup.ts),
 * its delta files skipped. A file that cannot be read is a warning, not a failure
 * (the backup completes without it and says so).
 *
 * Publishing follows the write order: every pack durable → the index files naming
 * them durable → the lock still held → the manifest created (atomic, durable). Only
 * then are a disk's older backup anchors deleted. If anything fails before, no
 * manifest exists and the packs written are unreferenced leftovers for prune.
 */
import os from 'node:os';
import path from 'node:path';
import { DeltaDiskError, fromSystemError } from '../errors.js';
import { encodeManifest, type Content, type Manifest } from '../format/manifest.js';
import { MAX_TAGS, MAX_TAG_LENGTH } from '../format/repo-limits.js';
import { DIRECT_ALIGN } from '../io/aligned-buffer.js';
import type { FileStat, FileSystem } from '../io/file-system.js';
import { nodeFileSystem } from '../io/node-file-system.js';
import { isPlainName } from '../io/path-guard.js';
import { backupChain, chainMemberNames, looksLikeChain } from './chain-backup.js';
import { BackupSession, preciseNow, SourceReadError, type BackupOptions, type BackupSummary, type BackupWarning } from './backup-session.js';
import { chunkFile } from './file-chunker.js';
import type { Repository } from './repository.js';
import { readLink } from './tree-ops.js';

export type { BackupOptions, BackupProgress, BackupSummary, BackupWarning } from './backup-session.js';

export interface BackupResult {
  readonly id: string;
  readonly dryRun: boolean;
  readonly manifest: Manifest;
  readonly summary: BackupSummary;
  readonly warnings: readonly BackupWarning[];
}

/** Disk images at least this large are read past the page cache. */
const DIRECT_IMAGE_BYTES = 1024 * 1024;
const IMAGE_NAME = /(\.(raw|img|iso|dd)|-flat\.vmdk|-s\d{3}\.vmdk|-f\d{3}\.vmdk)$/i;

export function isImageName(file: string): boolean {
  return IMAGE_NAME.test(file);
}

function invalid(message: string): never {
  throw new DeltaDiskError('INVALID_ARGUMENT', message);
}

/**
 * Backs up `sources` (files, directories, disk descriptors) into `repo`, which must
 * be open with a shared lock. Each source becomes a top-level entry named after its
 * last path component.
 * @throws INVALID_ARGUMENT, NOT_FOUND (a source), LOCK_LOST, NO_SPACE, IO_ERROR …
 */
export async function backup(repo: Repository, sources: readonly string[], options: BackupOptions = {}): Promise<BackupResult> {
  repo.assertLocked('shared', 'exclusive');
  if (!Array.isArray(sources) || sources.length === 0) invalid('give at least one path to back up');
  const fs = options.sourceFs ?? nodeFileSystem;
  const abs = sources.map((s) => path.resolve(s));
  const names = new Set<string>();
  const stats: FileStat[] = [];
  for (const a of abs) {
    const name = path.basename(a);
    if (!isPlainName(name)) invalid(`cannot back up ${a}: back up the directories under it instead`);
    if (names.has(name)) invalid(`two sources are named ${JSON.stringify(name)}; back them up separately`);
    names.add(name);
    stats.push(await fs.lstat(a).catch((err: unknown) => {
      throw fromSystemError(err, a, 'cannot back up');
    }));
  }
  return runBackup(repo, abs, options, async (session) => {
    // Never back up the repository into itself (a source holding it).
    session.skipPaths.add(repo.location);
    session.skipPaths.add(await fs.realpath(repo.location).catch(() => repo.location));
    session.bytesTotal = await estimateSize(fs, abs, stats);
    for (let i = 0; i < abs.length; i++) await walk(session, fs, abs[i]!, path.basename(abs[i]!), stats[i]!);
    return {};
  });
}

/**
 * One backup from start to publish: opens a session on `repo` (shared lock held),
 * lets `fill` add entries to it, then publishes the manifest (with `fill`'s extra
 * fields) and runs the session's after-commit work; if anything fails before the
 * manifest exists, the packs written are abandoned and the session's abort work
 * runs. `vm backup` uses it to add a captured VM instead of walking paths.
 * @throws INVALID_ARGUMENT (options), and whatever `fill` or publishing throws
 */
export async function runBackup(
  repo: Repository,
  paths: readonly string[],
  options: BackupOptions,
  fill: (session: BackupSession) => Promise<Pick<Manifest, 'vm'>>,
): Promise<BackupResult> {
  repo.assertLocked('shared', 'exclusive');
  const tags = options.tags ?? [];
  if (tags.length > MAX_TAGS || tags.some((t) => typeof t !== 'string' || t.length === 0 || t.length > MAX_TAG_LENGTH || /[\x00-\x1f,]/.test(t))) {
    invalid(`tags are 1 to ${MAX_TAG_LENGTH} printable characters without commas, at most ${MAX_TAGS}`);
  }
  const cs = options.chainSnapshots ?? 'none';
  if (cs !== 'none' && cs !== 'all' && !Array.isArray(cs)) invalid('chainSnapshots is none, all, or a list of names');
  // The manifest records the time to its commit point; the summary returned covers
  // the whole run: loading the index before, and the work after the commit
  // (removing the previous capture snapshots, closing disks).
  const t0 = performance.now();
  const index = await repo.loadIndex({ useCache: true });
  const session = new BackupSession(repo, index, options);
  let committed = false;
  let manifest: Manifest;
  try {
    const extra = await fill(session);
    session.checkpoint();
    manifest = await publish(session, paths, tags, t0, extra);
    committed = true;
    // The next backup starts from the index as it is now (best effort; stored while
    // the after-commit work waits on its disk).
    const caching = session.dryRun ? undefined : repo.saveIndexCache(index, session.writer.indexFilesWritten, session.id);
    for (const fn of session.afterCommit) await fn().catch((err: unknown) => session.warn('after the backup', err));
    await caching;
  } finally {
    if (!committed) {
      await session.writer.abort();
      for (const fn of session.onAbort) await fn().catch(() => undefined);
    }
    for (const fn of session.cleanup) await fn().catch(() => undefined);
  }
  session.summary.durationMs = Math.round(performance.now() - t0);
  return { id: session.id, dryRun: session.dryRun, manifest, summary: session.summary, warnings: session.warnings };
}

async function publish(s: BackupSession, abs: readonly string[], tags: readonly string[], t0: number, extra: Pick<Manifest, 'vm'>): Promise<Manifest> {
  await s.writer.flush();
  const w = s.writer.stats;
  Object.assign(s.summary, { bytesStored: w.storedBytes, packs: w.packs, indexFiles: w.indexFiles, durationMs: Math.round(performance.now() - t0) });
  const manifest: Manifest = {
    id: s.id,
    time: s.started,
    end: preciseNow(),
    host: s.options.host ?? os.hostname(),
    user: s.options.user ?? safeUser(),
    tags,
    paths: abs,
    entries: s.entries,
    summary: { ...s.summary },
    ...(extra.vm === undefined ? {} : { vm: extra.vm }),
  };
  const bytes = encodeManifest(manifest);
  if (!s.dryRun) {
    await s.repo.lock!.assertValid();
    await s.repo.backend.write('snapshot', s.id, [bytes], 'create');
  }
  return manifest;
}

function safeUser(): string {
  try {
    return os.userInfo().username;
  } catch {
    return '';
  }
}

async function estimateSize(fs: FileSystem, abs: readonly string[], stats: readonly FileStat[]): Promise<number> {
  let total = 0;
  let budget = 100_000;
  const visit = async (p: string, st: FileStat): Promise<void> => {
    if (--budget < 0) return;
    if (st.isFile) total += st.size;
    if (!st.isDirectory) return;
    for (const name of (await fs.readdir(p).catch(() => [] as string[])).sort()) {
      const child = path.join(p, name);
      const cst = await fs.lstat(child).catch(() => undefined);
      if (cst !== undefined) await visit(child, cst);
    }
  };
  for (let i = 0; i < abs.length; i++) await visit(abs[i]!, stats[i]!);
  return total;
}

const modeOf = (st: FileStat): number => st.mode & 0o7777;

/** Whether `err`, or an error it wraps (`cause`), is the system error `code`. */
function causedByErrno(err: unknown, code: string): boolean {
  for (let e = err as { code?: unknown; cause?: unknown } | undefined, depth = 0; e !== undefined && e !== null && depth < 8; e = e.cause as typeof e, depth++) {
    if (e.code === code) return true;
  }
  return false;
}

async function walk(s: BackupSession, fs: FileSystem, abs: string, entryPath: string, st: FileStat): Promise<void> {
  if (st.isSymbolicLink) {
    try {
      const target = await readLink(fs, abs);
      s.addEntry({ type: 'symlink', path: entryPath, mode: modeOf(st), mtimeMs: st.mtimeMs, target });
      s.summary.symlinks++;
    } catch (err) {
      s.warn(abs, err);
    }
    return;
  }
  if (st.isDirectory) {
    let names: string[];
    try {
      names = (await fs.readdir(abs)).sort();
    } catch (err) {
      s.warn(abs, fromSystemError(err, abs, 'cannot read directory'));
      return;
    }
    s.addEntry({ type: 'dir', path: entryPath, mode: modeOf(st), mtimeMs: st.mtimeMs });
    s.summary.dirs++;
    const skip = new Set<string>();
    for (const name of names) {
      if (name.endsWith('.chain') && (await looksLikeChain(fs, path.join(abs, name)))) for (const m of chainMemberNames(name, names)) skip.add(m);
    }
    for (const name of names) {
      if (skip.has(name)) continue;
      const child = path.join(abs, name);
      if (s.skipPaths.has(child)) {
        s.summary.skipped++;
        continue;
      }
      let cst: FileStat;
      try {
        cst = await fs.lstat(child);
      } catch (err) {
        s.warn(child, fromSystemError(err, child, 'cannot back up'));
        continue;
      }
      await walk(s, fs, child, `${entryPath}/${name}`, cst);
    }
    return;
  }
  if (!st.isFile) {
    s.summary.skipped++;
    return;
  }
  if (abs.endsWith('.chain') && (await looksLikeChain(fs, abs))) {
    try {
      s.addEntry(await backupChain(s, abs, entryPath, st));
      s.summary.chains++;
    } catch (err) {
      if (err instanceof DeltaDiskError && ['LOCKED', 'LOCK_INVALID', 'CHAIN_CORRUPT', 'NOT_FOUND', 'UNSAFE_PATH', 'BASE_MODIFIED', 'CHECKSUM_MISMATCH', 'TRUNCATED', 'STATE_MISMATCH'].includes(err.code)) {
        s.warn(abs, err);
        return;
      }
      throw err;
    }
    return;
  }
  await backupFile(s, fs, abs, entryPath, st);
}

/**
 * Adds one regular file as entry `entryPath`: chunked in fixed, block-aligned
 * chunks when it is a disk image (by `isImage`), content-defined otherwise. A file
 * that cannot be read is a warning; repository failures are thrown.
 */
export async function backupFile(s: BackupSession, fs: FileSystem, abs: string, entryPath: string, st: FileStat): Promise<void> {
  const image = (s.options.isImage ?? ((p: string) => isImageName(p)))(abs, st.size);
  const chunkSize = image ? s.repo.config.fixedChunkSize : 0;
  // A disk image is read past the page cache (it is read once, and through the page
  // cache each page read cost an allocation, the holes of a sparse image too).
  const direct = image && st.size >= DIRECT_IMAGE_BYTES && chunkSize % DIRECT_ALIGN === 0;
  let handle;
  try {
    handle = await fs.open(abs, 'read', { direct });
  } catch (err) {
    s.warn(abs, fromSystemError(err, abs, 'cannot read file'));
    return;
  }
  try {
    let content: Content;
    const mark = s.progressMark();
    try {
      content = await chunkFile(s, handle, abs, chunkSize, st.size);
    } catch (err) {
      // A direct read refused (an alignment stricter than 4 KiB): the file again,
      // through the page cache, its bytes counted once.
      if (!(err instanceof SourceReadError && handle.direct === true && causedByErrno(err, 'EINVAL'))) throw err;
      s.rewindProgress(mark);
      await handle.close().catch(() => undefined);
      handle = await fs.open(abs, 'read').catch((e: unknown) => {
        throw new SourceReadError(e);
      });
      content = await chunkFile(s, handle, abs, chunkSize, st.size);
    }
    s.addEntry({ type: 'file', path: entryPath, mode: modeOf(st), mtimeMs: st.mtimeMs, size: content.size, content });
    s.summary.files++;
    s.summary.bytes += content.size;
  } catch (err) {
    // Source read errors skip the file; repository errors end the backup.
    if (err instanceof SourceReadError) s.warn(abs, err.cause);
    else throw err;
  } finally {
    await handle.close().catch(() => undefined);
  }
}
