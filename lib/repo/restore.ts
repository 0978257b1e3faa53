/**
 * Restoring a backup into a target directory.
 *
 * Order of work: load the manifest, then the index (readers go the other way from
 * writers); check every selected entry (restore-plan.ts) and the target (no symlink
 * or file in the way of a directory, nothing to overwrite without `overwrite`)
 * before writing a byte; then create directories, write files and disks (each
 * verified chunk by chunk and published only when complete, restore-target.ts),
 * create symbolic links last, and set directory modes and times deepest first.
 * Modes are restored without setuid, setgid and sticky bits; ownership is not.
 * File system failures reach the caller as DeltaDiskErrors naming the path
 * (fromSystemError), never as bare errno errors.
 */
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { DeltaDiskError, fromSystemError, throwIfAborted } from '../errors.js';
import type { ChainEntry, Entry } from '../format/manifest.js';
import type { FileSystem } from '../io/file-system.js';
import { makeDirs } from '../io/make-dirs.js';
import { nodeFileSystem } from '../io/node-file-system.js';
import { readExactly } from '../io/positional.js';
import type { BackupWarning } from './backup-session.js';
import { restoreChain, verifyChain } from './chain-restore.js';
import { chainOwns, isSpecial, outputPath, pathParts, planRestore } from './restore-plan.js';
import { ensureDirectory, restoreFile, restoreSymlink, type TargetContext } from './restore-target.js';
import { verifyContent } from './restore-verify.js';
import type { Repository } from './repository.js';
import { treeOpsOf } from './tree-ops.js';

export type RestoreWarning = BackupWarning;

export interface RestoreProgress {
  readonly bytesTotal: number;
  readonly bytesDone: number;
  readonly path: string;
}

export interface RestoreOptions {
  /** Directory to restore into (created if missing). */
  readonly target: string;
  /** Restore only these entry paths and what is below them. */
  readonly include?: readonly string[];
  /** Replace existing files and symbolic links (never directories, never disks). */
  readonly overwrite?: boolean;
  /** Read everything back after writing and compare with the backup. */
  readonly verify?: boolean;
  /** Restore disks as one raw image (`<name>.raw`, the state at capture time). */
  readonly flatten?: boolean;
  /** The file system to write through; default: the real one. */
  readonly fs?: FileSystem;
  /** Treat the target as case-insensitive (default: probed). */
  readonly caseInsensitive?: boolean;
  readonly onProgress?: (p: RestoreProgress) => void;
  readonly onWarning?: (w: RestoreWarning) => void;
  /**
   * Aborting stops the restore at its next chunk or entry (INTERRUPTED): the file or
   * disk being written is removed, as after any failure; those finished before stay.
   */
  readonly signal?: AbortSignal;
}

export interface RestoreSummary {
  files: number;
  dirs: number;
  symlinks: number;
  chains: number;
  skipped: number;
  /** Logical bytes restored. */
  bytes: number;
  verified: boolean;
  warnings: number;
  durationMs: number;
}

export interface RestoreResult {
  readonly id: string;
  readonly target: string;
  readonly summary: RestoreSummary;
  readonly warnings: readonly RestoreWarning[];
}

/** Whether names differing only in case refer to the same file in `dir`. */
async function probeCaseInsensitive(fs: FileSystem, dir: string): Promise<boolean> {
  const name = `.deltadisk-probe-${randomBytes(6).toString('hex')}`;
  const p = path.join(dir, name);
  const h = await fs.open(p, 'createExclusive').catch((err: unknown) => {
    throw fromSystemError(err, p, 'probing whether the restore target ignores case failed');
  });
  await h.close();
  try {
    return (await fs.lstat(path.join(dir, name.toUpperCase())).catch(() => undefined)) !== undefined;
  } finally {
    await fs.unlink(p).catch(() => undefined);
  }
}

/** Refuses to start when the target is in the way (see the file comment). */
async function preflight(fs: FileSystem, root: string, entries: readonly Entry[], o: RestoreOptions): Promise<void> {
  const conflicts: string[] = [];
  for (const e of entries) {
    if (isSpecial(e)) continue;
    const rel = outputPath(e, o.flatten === true);
    const p = path.join(root, ...rel.split('/'));
    const st = await fs.lstat(p).catch(() => undefined);
    if (e.type === 'chain' && o.flatten !== true) {
      const dir = path.dirname(p);
      const names = await fs.readdir(dir).catch(() => [] as string[]);
      const owned = names.filter((n) => chainOwns(path.basename(p), n));
      if (st !== undefined || owned.length > 0) {
        throw new DeltaDiskError('ALREADY_EXISTS', `${p} (or one of its delta files) exists; disks are never restored over existing files`, { path: p });
      }
      continue;
    }
    if (st === undefined) continue;
    if (e.type === 'dir') {
      if (st.isSymbolicLink) throw new DeltaDiskError('UNSAFE_PATH', `${p} is a symbolic link in the target; not restoring through it`, { path: p });
      if (!st.isDirectory) throw new DeltaDiskError('ALREADY_EXISTS', `${p} exists and is not a directory`, { path: p });
      continue;
    }
    if (st.isDirectory) throw new DeltaDiskError('ALREADY_EXISTS', `${p} is a directory; not replacing it with a ${e.type}`, { path: p });
    if (!o.overwrite) conflicts.push(p);
  }
  if (conflicts.length > 0) {
    const shown = conflicts.slice(0, 5).join(', ');
    throw new DeltaDiskError('ALREADY_EXISTS', `${conflicts.length} file(s) exist in the target (${shown}${conflicts.length > 5 ? ', …' : ''}); pass --overwrite to replace them`, { path: conflicts[0] });
  }
}

/**
 * Restores backup `id` of `repo` into `options.target`.
 * @throws BACKUP_NOT_FOUND, UNSAFE_PATH, ALREADY_EXISTS, REPO_CORRUPT, CHECKSUM_MISMATCH …
 */
export async function restore(repo: Repository, id: string, options: RestoreOptions): Promise<RestoreResult> {
  repo.assertOpen();
  const t0 = performance.now();
  const fs = options.fs ?? nodeFileSystem;
  const manifest = await repo.loadManifest(id);
  const index = await repo.loadIndex();
  const requested = path.resolve(options.target);
  await makeDirs(fs, requested, 0o755).catch((err: unknown) => {
    throw fromSystemError(err, requested, 'creating the restore target failed');
  });
  const root = await fs.realpath(requested).catch((err: unknown) => {
    throw fromSystemError(err, requested, 'resolving the restore target failed');
  });
  const rootStat = await fs.stat(root).catch((err: unknown) => {
    throw fromSystemError(err, root, 'reading the restore target failed');
  });
  if (!rootStat.isDirectory) throw new DeltaDiskError('ALREADY_EXISTS', `${root} is not a directory`, { path: root });
  const caseInsensitive = options.caseInsensitive ?? (await probeCaseInsensitive(fs, root));
  const entries = planRestore(manifest.entries, { caseInsensitive, flatten: options.flatten === true, ...(options.include === undefined ? {} : { include: options.include }) });
  await preflight(fs, root, entries, options);

  const warnings: RestoreWarning[] = [];
  const summary: RestoreSummary = { files: 0, dirs: 0, symlinks: 0, chains: 0, skipped: 0, bytes: 0, verified: false, warnings: 0, durationMs: 0 };
  let total = 0;
  for (const e of entries) {
    if (e.type === 'file') total += e.size;
    if (e.type === 'chain') total += e.chain.virtualSize * (options.flatten ? 1 : 1 + e.chain.points.length);
  }
  let done = 0;
  let current = '';
  let last = 0;
  const checkpoint = (): void => throwIfAborted(options.signal, 'the restore was interrupted; what it had not finished was removed');
  const t: TargetContext = {
    fs,
    ops: treeOpsOf(fs),
    repo,
    index,
    overwrite: options.overwrite === true,
    touched: new Set<string>(),
    leftovers: new Map(),
    // Every path of the backup, not only those selected: a file of the backup that an
    // earlier restore wrote is never taken for a leftover by one restoring less.
    planned: new Set(manifest.entries.map((e) => path.join(root, ...outputPath(e, options.flatten === true).split('/')))),
    onBytes(n) {
      checkpoint();
      done += n;
      const now = performance.now();
      if (options.onProgress !== undefined && (now - last >= 100 || done >= total)) {
        last = now;
        options.onProgress({ bytesTotal: total, bytesDone: done, path: current });
      }
    },
  };
  const dirs: { p: string; e: Entry }[] = [];
  const links: { p: string; target: string; mtimeMs: number }[] = [];
  for (const e of entries) {
    checkpoint();
    const p = path.join(root, ...pathParts(outputPath(e, options.flatten === true)));
    current = p;
    switch (e.type) {
      case 'dir':
        await ensureDirectory(fs, p);
        t.touched.add(path.dirname(p));
        dirs.push({ p, e });
        summary.dirs++;
        break;
      case 'file':
        await restoreFile(t, e.content, p, e.mode, e.mtimeMs);
        summary.files++;
        summary.bytes += e.size;
        break;
      case 'symlink':
        links.push({ p, target: e.target, mtimeMs: e.mtimeMs });
        break;
      case 'chain':
        if (options.flatten) await restoreFile(t, e.chain.capture.content, p, e.mode, e.mtimeMs);
        else await restoreChain(t, e, p);
        summary.chains++;
        summary.bytes += e.chain.virtualSize;
        break;
      default: {
        const w = { path: p, message: `not restoring ${e.type} ${e.path}: special files are never created`, code: 'UNSAFE_PATH' as const };
        warnings.push(w);
        options.onWarning?.(w);
        summary.skipped++;
      }
    }
  }
  for (const l of links) {
    await restoreSymlink(t, l.target, l.p, l.mtimeMs);
    summary.symlinks++;
  }
  for (const { p, e } of dirs.reverse()) {
    try {
      await t.ops.chmod(p, e.mode & 0o777);
      await t.ops.lutimes(p, e.mtimeMs, e.mtimeMs);
    } catch (err) {
      throw fromSystemError(err, p, 'setting the mode and time of a restored directory failed');
    }
  }
  for (const d of t.touched) await fs.syncDir(d).catch(() => undefined);

  if (options.verify) {
    for (const e of entries) {
      checkpoint();
      const p = path.join(root, ...outputPath(e, options.flatten === true).split('/'));
      if (e.type === 'file' || (e.type === 'chain' && options.flatten)) {
        await verifyFile(fs, repo, t, e.type === 'file' ? e.content : (e as ChainEntry).chain.capture.content, p);
      } else if (e.type === 'chain') {
        await verifyChain(t, e, p);
      }
    }
    summary.verified = true;
  }
  summary.warnings = warnings.length;
  summary.durationMs = Math.round(performance.now() - t0);
  return { id: manifest.id, target: root, summary, warnings };
}

async function verifyFile(fs: FileSystem, repo: Repository, t: TargetContext, c: ChainEntry['chain']['capture']['content'], p: string): Promise<void> {
  const h = await fs.open(p, 'read').catch((err: unknown) => {
    throw fromSystemError(err, p, 'opening a restored file to verify it failed');
  });
  try {
    const size = (await h.stat().catch((err: unknown) => {
      throw fromSystemError(err, p, 'reading a restored file to verify it failed');
    })).size;
    await verifyContent(repo, t.index, c, (o, l) => (o >= size ? Promise.resolve(Buffer.alloc(0)) : readExactly(h, o, Math.min(l, size - o))), p);
  } finally {
    await h.close();
  }
}
