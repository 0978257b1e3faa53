/**
 * `backupVm`: a VM directory into a backup repository, at one point in time.
 *
 *     open repository (shared lock) → freeze → capture → thaw → copy from the
 *     capture → publish the manifest → release the capture
 *
 * The capture (capture-vm.ts) snapshots every chain disk and clones every file that
 * may change, inside the freeze window; everything slow happens outside it. The
 * backup then reads the capture at leisure: chain disks from their capture snapshot
 * (only the blocks changed since the previous backup's capture, when that snapshot
 * still exists), files from their clones (deduplicated against the repository).
 *
 * The manifest's entries are the VM directory's files at the top level (a restore
 * into a directory gives back the VM directory), chain disks with their own
 * snapshots (which the VM's snapshot tree names; each read relative to the capture,
 * or reused from the previous backup, since snapshots never change), and its `vm` record says how the
 * capture went: consistency reached, freeze window, every hook's outcome and output.
 *
 * Capture snapshots between backups: a chain disk keeps exactly one per repository
 * (its description names the repository), the base of the next incremental backup.
 * After the manifest is durable the older ones are deleted; if the backup fails, its
 * own is deleted and the previous one stays. A VM backup is all its files or nothing:
 * a file that cannot be read, or a file read in place that changed meanwhile, fails
 * it (no manifest is written).
 */
import fsp from 'node:fs/promises';
import path from 'node:path';
import { DeltaDiskError, fromSystemError } from '../errors.js';
import type { Entry } from '../format/manifest.js';
import type { VmDiskRecord, VmHookRecord, VmRecord } from '../format/vm-record.js';
import type { FileStat } from '../io/file-system.js';
import { nodeFileSystem } from '../io/node-file-system.js';
import { runLimited, settleLimited } from '../io/settle-limited.js';
import { backupFile, runBackup, type BackupOptions, type BackupResult } from '../repo/backup.js';
import type { BackupSession, BackupWarning } from '../repo/backup-session.js';
import { backupChain } from '../repo/chain-backup.js';
import type { Repository } from '../repo/repository.js';
import type { Capture, CaptureOptions, CapturedChainDisk, CapturedFile, CapturedItem, ReleaseReport } from './capture-types.js';
import { DISKS_AT_ONCE, deleteSnapshotsOf } from './capture-target.js';
import { captureVm } from './capture-vm.js';
import { CAPTURE_SNAPSHOT_PREFIX } from './chain-disk-probe.js';
import type { VmDisk } from './vm-inventory-types.js';
import type { Disk } from '../chain/disk.js';

export interface VmBackupOptions
  extends Pick<BackupOptions, 'tags' | 'host' | 'user' | 'dryRun' | 'compress' | 'onProgress' | 'onWarning' | 'chainSnapshots'>,
    Pick<CaptureOptions, 'allowPaths' | 'hooks' | 'clone' | 'includeLogs' | 'includeUnknown' | 'acceptProblems' | 'disks' | 'signal' | 'onLog' | 'killGraceMs'> {}

export interface VmBackupResult extends BackupResult {
  readonly vm: VmRecord;
  /** Capture snapshots deleted after the backup (older captures of this repository). */
  readonly deletedSnapshots: readonly string[];
}

/** The description of the capture snapshots a repository keeps on a VM's chain disks. */
export function captureDescription(repoId: string): string {
  return `deltadisk vm backup capture (repository ${repoId})`;
}

/** Entry paths for the captured items: their names in the VM, outside files renamed into it. */
function entryNames(items: readonly CapturedItem[]): Map<CapturedItem, string> {
  const out = new Map<CapturedItem, string>();
  const used = new Set(items.filter((i) => !path.isAbsolute(i.name)).map((i) => i.name));
  for (const i of items) {
    if (!path.isAbsolute(i.name)) {
      out.set(i, i.name.split(path.sep).join('/'));
      continue;
    }
    let name = `outside-${path.basename(i.name)}`;
    for (let n = 2; used.has(name); n++) name = `outside-${n}-${path.basename(i.name)}`;
    used.add(name);
    out.set(i, name);
  }
  return out;
}

function hookRecords(c: Capture): VmHookRecord[] {
  return c.quiesce.hooks.map((h) => ({
    hook: h.hook,
    phase: h.phase,
    ok: h.ok,
    exitCode: h.exitCode,
    signal: h.signal,
    timedOut: h.timedOut,
    interrupted: h.interrupted,
    error: h.error,
    startedAt: h.startedAt,
    durationMs: Math.round(h.durationMs),
    output: h.output,
    outputTruncated: h.outputTruncated,
  }));
}

/** Every descriptor and extent of a VMDK disk's running chain, by real path. */
function chainFiles(d: VmDisk): Set<string> {
  const out = new Set<string>();
  for (const l of d.links) {
    out.add(l.path);
    for (const e of l.extents) if (e.path !== null) out.add(e.path);
  }
  return out;
}

function vmRecord(c: Capture, names: Map<CapturedItem, string>, warnings: readonly string[]): VmRecord {
  const byName = new Map([...names].map(([item, entry]) => [item.source, entry]));
  const disks: VmDiskRecord[] = c.inventory.disks
    .filter((d) => d.included)
    .map((d) => ({
      node: d.node,
      fileName: d.fileName,
      format: d.format,
      // A file of the set is attributed to the first disk that reached it (VmFile.disk);
      // a parent two disks share belongs to both, so every link of this disk's chain
      // counts too: restoring one disk must bring its whole chain.
      entries: c.inventory.files.filter((f) => f.disk === d.node || f.path === d.path || chainFiles(d).has(f.path)).map((f) => byName.get(f.path)).filter((e): e is string => e !== undefined),
    }));
  const vmxItem = c.items.find((i): i is CapturedFile => i.type === 'file' && i.kind === 'config');
  return {
    dir: c.vmDir,
    vmx: vmxItem === undefined ? c.vmx : names.get(vmxItem)!,
    name: c.displayName,
    capturedAt: c.capturedAt,
    consistency: c.consistency,
    freezeWindowMs: c.freezeWindowMs,
    copiedWhileFrozen: c.copiedWhileFrozen,
    quiesce: { mode: c.quiesce.mode, quiesced: c.quiesce.quiesced, failure: c.quiesce.failure, thawFailed: c.quiesce.thawFailed, hooks: hookRecords(c) },
    disks,
    outside: [...names].filter(([i]) => path.isAbsolute(i.name)).map(([i, entry]) => ({ entry, path: i.source })),
    warnings,
  };
}

async function addItems(s: BackupSession, c: Capture, names: Map<CapturedItem, string>): Promise<void> {
  const sorted = [...c.items].sort((a, b) => (names.get(a)! < names.get(b)! ? -1 : 1));
  s.bytesTotal = sorted.reduce((n, i) => n + (i.type === 'file' ? i.size : i.virtualSize), 0);
  // The chain disks are read a few at a time, while the files are read in turn (each
  // disk waits on its own files and the repository, not on the others); the entries
  // go in in order all the same.
  const disks = sorted.filter((i): i is CapturedChainDisk => i.type === 'chain-disk');
  let failed = false;
  const entries = runLimited(disks, DISKS_AT_ONCE, async (item) => {
    if (failed) throw new DeltaDiskError('INTERRUPTED', 'the VM backup failed');
    const st = await nodeFileSystem.stat(item.source).catch((err: unknown) => {
      throw fromSystemError(err, item.source, `cannot back up ${item.name} of the VM`);
    });
    return backupChain(s, item.source, names.get(item)!, st, { snapshot: item.snapshot.name, disk: c.heldDisk(item) });
  });
  for (const e of entries) e.catch(() => undefined); // awaited below, or settled before a failure is thrown
  const reading = new Map<CapturedItem, Promise<Entry>>(disks.map((d, k) => [d, entries[k]!]));
  try {
    const dirs = new Set<string>();
    for (const item of sorted) {
      const entry = names.get(item)!;
      // Parents first, as the manifest requires (VM files are rarely in subdirectories).
      const parts = entry.split('/');
      for (let k = 1; k < parts.length; k++) {
        const dir = parts.slice(0, k).join('/');
        if (dirs.has(dir)) continue;
        dirs.add(dir);
        const st = await fsp.stat(path.join(c.vmDir, dir));
        s.addEntry({ type: 'dir', path: dir, mode: st.mode & 0o7777, mtimeMs: st.mtimeMs });
        s.summary.dirs++;
      }
      if (item.type === 'chain-disk') {
        s.addEntry(await reading.get(item)!);
        s.summary.chains++;
        continue;
      }
      const source = await nodeFileSystem.stat(item.source).catch(() => undefined);
      const clone = await nodeFileSystem.stat(item.path).catch((err: unknown) => {
        throw fromSystemError(err, item.path, `cannot back up ${item.name} of the VM`);
      });
      const st: FileStat = { ...clone, mtimeMs: item.mtimeMs, ...(source === undefined ? {} : { mode: source.mode }) };
      const before = s.warnings.length;
      await backupFile(s, nodeFileSystem, item.path, entry, st);
      if (s.warnings.length > before) {
        const w = s.warnings[before]!;
        throw new DeltaDiskError(w.code ?? 'IO_ERROR', `cannot back up ${item.name} of the VM: ${w.message}; a VM backup holds all its files or fails`, { path: item.source });
      }
    }
  } catch (err) {
    failed = true;
    throw err;
  } finally {
    // Nothing is left reading once this returns or throws (the session then closes the disks).
    await Promise.allSettled(reading.values());
  }
}

/**
 * Backs up the VM directory `vmDir` (or its .vmx) into `repo`, which must be open
 * with a shared lock.
 * @throws VM_INVALID, LOCKED, HOOK_FAILED, INTERRUPTED, STATE_MISMATCH (the VM's
 *   configuration, or a file read in place, changed during the backup), and the
 *   repository's errors (LOCK_LOST, NO_SPACE, IO_ERROR …)
 */
export async function backupVm(repo: Repository, vmDir: string, options: VmBackupOptions = {}): Promise<VmBackupResult> {
  repo.assertLocked('shared', 'exclusive');
  if (typeof vmDir !== 'string' || vmDir.length === 0) throw new DeltaDiskError('INVALID_ARGUMENT', 'give the VM directory to back up');
  const description = captureDescription(repo.config.id);
  let capture: Capture | undefined;
  let vm: VmRecord | undefined;
  const backupOptions: BackupOptions = {
    ...(options.tags === undefined ? {} : { tags: options.tags }),
    ...(options.host === undefined ? {} : { host: options.host }),
    ...(options.user === undefined ? {} : { user: options.user }),
    ...(options.dryRun === undefined ? {} : { dryRun: options.dryRun }),
    ...(options.compress === undefined ? {} : { compress: options.compress }),
    ...(options.onProgress === undefined ? {} : { onProgress: options.onProgress }),
    ...(options.onWarning === undefined ? {} : { onWarning: options.onWarning }),
    ...(options.allowPaths === undefined ? {} : { allowPaths: options.allowPaths }),
    // The copy stops on it too, not only the capture.
    ...(options.signal === undefined ? {} : { signal: options.signal }),
    // The disks' own snapshots go too: the VM's snapshot tree (.vmsd) names them.
    chainSnapshots: options.chainSnapshots ?? 'all',
  };
  let result: BackupResult;
  // The work after the commit (releasing the capture, deleting the older capture
  // snapshots) runs as the session's after-commit work, beside storing the index
  // cache; what it reports is read once the backup returns.
  let after: Promise<AfterCommit> | undefined;
  const diskOptions = (c: Capture, item: CapturedChainDisk) => ({ allowPaths: [c.vmDir, ...(options.allowPaths ?? [])], given: options.disks?.get(item.source) });
  try {
    const given = path.resolve(vmDir);
    const dir = await fsp.realpath(given.endsWith('.vmx') ? path.dirname(given) : given).catch(() => given);
    result = await runBackup(repo, [dir], backupOptions, async (s) => {
      const c = await captureVm(vmDir, {
        ...pickCapture(options),
        id: s.id,
        operation: 'backup',
        snapshotDescription: description,
        // The repository's side of finding each chain disk's base, while the capture
        // reaches and flushes the disks (finished before the freeze: never inside the
        // window). A VM without chain disks has no base to find.
        prepare: (inventory) => (inventory.disks.some((d) => d.format === 'chain' && d.included) ? s.prefetchPreviousChains() : Promise.resolve()),
      });
      capture = c;
      const names = entryNames(c.items);
      await addItems(s, c, names);
      const changed = await c.checkUnchanged();
      if (changed.length > 0) {
        throw new DeltaDiskError('STATE_MISMATCH', `files the capture read in place changed during the backup: ${changed.map((f) => f.name).join(', ')}; back up again`, { path: changed[0]!.source });
      }
      vm = vmRecord(c, names, c.warnings);
      if (!s.dryRun) {
        s.afterCommit.push(async () => {
          after = afterCommit(c, description, (item) => diskOptions(c, item));
          await after;
        });
      }
      return { vm };
    });
  } catch (err) {
    if (capture !== undefined) await capture.release({ deleteSnapshots: true }).catch(() => undefined);
    throw err;
  }
  const c = capture!;
  // A dry run keeps nothing; a real one keeps its capture snapshots and drops the
  // older ones (done already, unless the after-commit work could not run at all).
  const done = await (after ?? (result.dryRun ? Promise.resolve(undefined) : afterCommit(c, description, (item) => diskOptions(c, item))));
  const release = done?.release ?? (await c.release({ deleteSnapshots: true }));
  const warnings = [...result.warnings];
  for (const f of release.failures) warnings.push({ path: f.disk, message: `capture snapshot ${f.snapshot} could not be deleted: ${f.error}`, code: undefined });
  if (done !== undefined) warnings.push(...done.warnings);
  for (const w of warnings.slice(result.warnings.length)) options.onWarning?.(w);
  return { ...result, warnings, vm: vm!, deletedSnapshots: done?.deleted ?? [] };
}

interface AfterCommit {
  readonly release: ReleaseReport;
  readonly deleted: string[];
  readonly warnings: BackupWarning[];
}

/**
 * After the manifest is durable: releases the capture (keeping its snapshots, the
 * next backup's base) while the older capture snapshots of this repository are
 * deleted, a few disks at a time (capture-target's deleteSnapshotsOf: a bookmark of
 * a disk nobody holds is one descriptor replacement); results in the disks' order.
 * Never throws: what fails is a warning.
 */
async function afterCommit(c: Capture, description: string, options: (item: CapturedChainDisk) => { allowPaths: string[]; given: Disk | undefined }): Promise<AfterCommit> {
  const releasing = c.release({ deleteSnapshots: false });
  const chainItems = chainDisks(c);
  const outcomes = await settleLimited(chainItems, DISKS_AT_ONCE, async (item) => {
    const older = (list: readonly { readonly name: string; readonly description: string }[]): string[] =>
      list.filter((x) => x.name !== item.snapshot.name && x.name.startsWith(CAPTURE_SNAPSHOT_PREFIX) && x.description === description).map((x) => x.name);
    return (await deleteSnapshotsOf(item.source, older, options(item))).map((name) => `${item.name}:${name}`);
  });
  const deleted: string[] = [];
  const warnings: BackupWarning[] = [];
  outcomes.forEach((o, k) => {
    if (o.status === 'fulfilled') {
      deleted.push(...o.value);
      return;
    }
    const message = o.reason instanceof Error ? o.reason.message : String(o.reason);
    warnings.push({ path: chainItems[k]!.name, message: `older capture snapshots stay (the next backup deletes them): ${message}`, code: undefined });
  });
  const release = await releasing.catch((err: unknown): ReleaseReport => {
    warnings.push({ path: c.vmDir, message: `the capture could not be released: ${err instanceof Error ? err.message : String(err)}`, code: undefined });
    return { removedCaptureDir: false, deletedSnapshots: [], failures: [] };
  });
  return { release, deleted, warnings };
}

function chainDisks(c: Capture): CapturedChainDisk[] {
  return c.items.filter((i): i is CapturedChainDisk => i.type === 'chain-disk');
}

function pickCapture(o: VmBackupOptions): CaptureOptions {
  const keys = ['allowPaths', 'hooks', 'clone', 'includeLogs', 'includeUnknown', 'acceptProblems', 'disks', 'signal', 'onLog', 'killGraceMs'] as const;
  const out: Record<string, unknown> = {};
  for (const k of keys) if (o[k] !== undefined) out[k] = o[k];
  return out as CaptureOptions;
}
