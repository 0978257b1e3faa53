/**
 * `captureVm`: freeze → capture one point in time → thaw, measuring the freeze
 * window (see capture-types.ts for the result and how to use it).
 *
 * Everything slow happens before the freeze: the inventory, the hook plan, opening
 * (and locking) every chain disk, the capture directory, stat of files read in
 * place. Inside the window: one snapshot per chain disk, all taken together (each a
 * few fsyncs, independent of disk size), then a reflink clone (or, failing that, a
 * copy) of every file that may change. The vmx is cloned too and compared with the
 * inventory, so a configuration that changed meanwhile fails the capture instead of
 * producing a mixed one. Thaw runs in a `finally`; after a failure everything taken
 * is undone (snapshots deleted after the thaw, never inside the window).
 *
 * Chain disks opened here give up their writer locks right after the window (the
 * lock is held for milliseconds) and stay open read-only until `release`: the copy
 * reads the capture points through them (`heldDisk`) rather than opening each disk
 * again, and reading needs no lock. A disk served by `deltadisk serve` is
 * snapshotted through its control channel (capture-target.ts), between two NBD
 * requests.
 */
import { randomBytes } from 'node:crypto';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { Disk } from '../chain/disk.js';
import { DeltaDiskError, fromSystemError, isDeltaDiskError, throwIfAborted } from '../errors.js';
import { settleLimited } from '../io/settle-limited.js';
import { CAPTURE_SNAPSHOT_PREFIX } from './chain-disk-probe.js';
import { DISKS_AT_ONCE, reachChainDisk, withChainDisk, type CaptureTarget } from './capture-target.js';
import type { Capture, CapturedChainDisk, CapturedFile, CapturedItem, CaptureOptions, ReleaseReport } from './capture-types.js';
import { FileCloner } from './file-clone.js';
import { hasHooks, planHooks } from './hooks/hook-plan.js';
import { QuiesceSession } from './hooks/quiesce-session.js';
import { CAPTURE_DIR_PREFIX } from './leftover-files.js';
import { claimCaptureDir, removeDeadCaptureDirs, type CaptureClaim } from './capture-owner.js';
import { inspectVm } from './vm-inventory.js';
import type { VmFile } from './vm-inventory-types.js';
import { isInside } from './vm-reference.js';
import { parseVmx } from './vmx-file.js';

const ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

export function newCaptureId(): string {
  return `${new Date().toISOString().replace(/[-:]/g, '').replace(/\..*$/, '')}-${randomBytes(3).toString('hex')}`;
}

interface OpenedDisk {
  readonly node: string;
  readonly file: VmFile;
  readonly disk: CaptureTarget;
}

/**
 * @throws VM_INVALID (see inspectVm; also when the inventory has error-level
 *   problems, such as a missing extent or a disk outside the directory, unless
 *   `acceptProblems`), NOT_FOUND; LOCKED (a chain disk is held by
 *   another writer: pass it in `disks`, or stop the VM); HOOK_FAILED (required
 *   quiesce); INTERRUPTED; STATE_MISMATCH (the configuration changed meanwhile);
 *   SNAPSHOT_EXISTS (a capture with this id exists); IO_ERROR, NO_SPACE
 */
export async function captureVm(vmDir: string, options: CaptureOptions = {}): Promise<Capture> {
  const id = options.id ?? newCaptureId();
  if (!ID.test(id)) throw new DeltaDiskError('INVALID_ARGUMENT', `capture id ${JSON.stringify(id)} must be 1 to 64 letters, digits, '.', '_' or '-'`);
  const allowPaths = options.allowPaths ?? [];
  // The chain disks are opened for writing below, which checks their layers: the
  // inventory reads their descriptors alone.
  const inventory = await inspectVm(vmDir, {
    allowPaths,
    openChains: false,
    ...(options.includeLogs === undefined ? {} : { includeLogs: options.includeLogs }),
    ...(options.includeUnknown === undefined ? {} : { includeUnknown: options.includeUnknown }),
  });
  const errors = inventory.problems.filter((p) => p.severity === 'error');
  if (errors.length > 0 && options.acceptProblems !== true) {
    throw new DeltaDiskError('VM_INVALID', `the VM has problems a capture would carry over (accept them explicitly to go on):\n${errors.map((p) => `  ${p.code}: ${p.message}`).join('\n')}`, { path: inventory.dir });
  }
  // Settled (never rejected) before the freeze; started now, it overlaps what follows.
  const prepared = Promise.resolve()
    .then(() => options.prepare?.(inventory))
    .catch(() => undefined);
  const plan = await planHooks(options.hooks ?? {});
  const snapshotName = `${CAPTURE_SNAPSHOT_PREFIX}${id}`;
  const captureDir = path.resolve(options.captureDir ?? path.join(inventory.dir, `${CAPTURE_DIR_PREFIX}${id}`));
  const inPlace = options.inPlace ?? true;
  const opened: OpenedDisk[] = [];
  /** Disks opened here, read-only after the window, by descriptor path. */
  const held = new Map<string, Disk>();
  const taken: { d: OpenedDisk; name: string }[] = [];
  let madeDir = false;
  let claim: CaptureClaim | undefined;
  try {
    // The disks are opened and flushed a few at a time (each waits on its own
    // files); `opened` keeps the inventory's order, and holds every disk opened
    // even when another failed, so the cleanup below closes them all.
    const chainDisks = inventory.disks.filter((disk) => disk.format === 'chain' && disk.included && disk.path !== null);
    const reached = await settleLimited(chainDisks, DISKS_AT_ONCE, (disk) =>
      reachChainDisk(disk.path!, { allowPaths: [inventory.dir, ...allowPaths], given: options.disks?.get(disk.path!) }),
    );
    reached.forEach((r, k) => {
      if (r.status === 'fulfilled') opened.push({ node: chainDisks[k]!.node, file: inventory.files.find((f) => f.path === chainDisks[k]!.path)!, disk: r.value });
    });
    throwFirstFailure(reached);
    for (const [k, d] of opened.entries()) {
      if ((await d.disk.snapshots()).some((x) => x.name === snapshotName)) {
        throw new DeltaDiskError('SNAPSHOT_EXISTS', `${chainDisks[k]!.fileName} already has a snapshot ${snapshotName}: capture ids must be unique`, { path: d.file.path });
      }
    }
    // Data written so far made durable now, outside the window: the snapshots inside it then sync almost nothing.
    await settleLimited(opened, DISKS_AT_ONCE, (d) => d.disk.flush()).then(throwFirstFailure);
    await removeDeadCaptureDirs(inventory.dir);
    await fsp.mkdir(captureDir, { mode: 0o700 }).catch((err: unknown) => {
      throw isDeltaDiskError(err) ? err : (err as NodeJS.ErrnoException).code === 'EEXIST' ? new DeltaDiskError('ALREADY_EXISTS', `${captureDir} exists`, { path: captureDir }) : fromSystemError(err, captureDir, 'creating the capture directory failed');
    });
    madeDir = true;
    claim = await claimCaptureDir(captureDir);
    const plain = inventory.files.filter((f) => f.chainDisk !== true);
    const inPlaceItems: CapturedFile[] = [];
    for (const f of plain.filter((x) => inPlace && x.immutable)) {
      const st = await fsp.stat(f.path);
      inPlaceItems.push(fileItem(f, f.path, 'in-place', st.size, st.mtimeMs));
    }
    const toClone = plain.filter((x) => !(inPlace && x.immutable));
    // Files keep their place relative to the VM directory (a disk in `disks/` is
    // cloned to `<capture>/disks/`): the directories are made now, before the freeze,
    // and every destination must lie inside the capture directory.
    const destinations = toClone.map((f, i) => path.join(captureDir, cloneName(f, i)));
    for (const dst of destinations) {
      if (!isInside(captureDir, dst) || dst === captureDir) throw new DeltaDiskError('UNSAFE_PATH', `${dst} would lie outside the capture directory`, { path: dst });
      await fsp.mkdir(path.dirname(dst), { recursive: true, mode: 0o700 }).catch((err: unknown) => {
        throw fromSystemError(err, path.dirname(dst), 'creating a directory in the capture directory failed');
      });
    }
    const cloner = new FileCloner(options.clone ?? 'auto');
    const session = new QuiesceSession(
      plan,
      { vmDir: inventory.dir, vmx: inventory.vmx, vmName: inventory.displayName ?? inventory.vmx, backupId: id, operation: options.operation ?? 'backup' },
      { ...(options.signal === undefined ? {} : { signal: options.signal }), ...(options.onLog === undefined ? {} : { onLog: options.onLog }), ...(options.killGraceMs === undefined ? {} : { killGraceMs: options.killGraceMs }) },
    );
    const items: CapturedItem[] = [];
    let windowMs = 0;
    let capturedAt = '';
    await prepared;
    try {
      await session.freeze();
      const t0 = performance.now();
      capturedAt = new Date().toISOString();
      throwIfAborted(options.signal, 'the capture was interrupted');
      // All disks at once: nothing else writes them (we hold their locks, or the
      // caller paused its writes), so overlapping their fsyncs only shortens the window.
      const description = options.snapshotDescription ?? `capture ${id} of ${inventory.vmx}`;
      const results = await Promise.allSettled(opened.map((d) => d.disk.snapshot(snapshotName, description)));
      results.forEach((r, i) => {
        if (r.status === 'fulfilled') {
          taken.push({ d: opened[i]!, name: snapshotName });
          items.push(chainItem(opened[i]!, r.value));
        }
      });
      throwFirstFailure(results);
      for (const [i, f] of toClone.entries()) {
        throwIfAborted(options.signal, 'the capture was interrupted');
        const dst = destinations[i]!;
        const r = await cloner.clone(f.path, dst, options.signal);
        items.push(fileItem(f, dst, r.method, r.size, (await fsp.stat(f.path)).mtimeMs));
      }
      windowMs = performance.now() - t0;
      await checkConfigUnchanged(inventory, items);
    } finally {
      await session.thaw();
    }
    // The writer locks go now; the disks the capture opened stay open read-only, for
    // the copy to read the capture points through (closed by release).
    const kept = await settleLimited(opened, DISKS_AT_ONCE, (d) => d.disk.keepReading());
    kept.forEach((k, i) => {
      if (k.status === 'fulfilled' && k.value !== undefined) held.set(opened[i]!.file.path, k.value);
    });
    throwFirstFailure(kept);
    items.push(...inPlaceItems);
    const warnings: string[] = [];
    if (hasHooks(options.hooks ?? {}) && !session.quiesced) warnings.push(`not quiesced: ${session.failure ?? 'unknown'}; the capture is crash-consistent`);
    if (session.thawFailed) warnings.push('a thaw hook failed: check that the guest is running normally');
    for (const s of plan.skipped) warnings.push(`hook ${s.name} was not run: ${s.reason}`);
    if (items.some((i) => i.method === 'copy')) warnings.push('the file system cannot clone files: files were copied while frozen, and the freeze window includes the copy');
    if (inventory.looksRunning && !session.quiesced && items.some((i) => i.type === 'file' && i.kind.startsWith('disk'))) {
      warnings.push('the VM looks running and was not quiesced: its VMDK files were captured one after another, not at one instant');
    }
    return makeCapture({ id, inventory, captureDir, capturedAt, windowMs, items, warnings, session, allowPaths, disks: options.disks, held, claim: claim! });
  } catch (err) {
    for (const d of opened) await d.disk.close().catch(() => undefined);
    await undoSnapshots(taken, allowPaths, inventory.dir, options.disks);
    if (madeDir) await fsp.rm(captureDir, { recursive: true, force: true }).catch(() => undefined);
    await claim?.release();
    throw err;
  }
}

/** Throws the reason of the first rejected result, if any (after every one settled). */
function throwFirstFailure(results: readonly PromiseSettledResult<unknown>[]): void {
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed !== undefined) throw failed.reason;
}

async function undoSnapshots(taken: { d: OpenedDisk; name: string }[], allowPaths: readonly string[], vmDir: string, given: ReadonlyMap<string, Disk> | undefined): Promise<void> {
  for (const { d, name } of taken) {
    try {
      await withChainDisk(d.file.path, { allowPaths: [vmDir, ...allowPaths], given: given?.get(d.file.path) }, (t) => t.deleteSnapshot(name));
    } catch {
      // Left for `vm inspect` to report (CAPTURE_SNAPSHOT) and a later release to remove.
    }
  }
}

function cloneName(f: VmFile, n: number): string {
  return path.isAbsolute(f.name) ? `outside-${n}-${path.basename(f.name)}` : f.name;
}

function fileItem(f: VmFile, p: string, method: CapturedFile['method'], size: number, mtimeMs: number): CapturedFile {
  return { type: 'file', name: f.name, kind: f.kind, source: f.path, path: p, method, size, mtimeMs, ...(f.disk === undefined ? {} : { disk: f.disk }) };
}

function chainItem(d: OpenedDisk, s: { id: string; name: string; created: string }): CapturedChainDisk {
  return {
    type: 'chain-disk',
    name: d.file.name,
    node: d.node,
    source: d.file.path,
    method: 'snapshot',
    snapshot: { id: s.id, name: s.name, created: s.created },
    virtualSize: d.disk.virtualSize,
    blockSize: d.disk.blockSize,
  };
}

/** The captured vmx must name the same disks as the one inspected: else the capture would mix two configurations. */
async function checkConfigUnchanged(inventory: Capture['inventory'], items: CapturedItem[]): Promise<void> {
  const vmx = items.find((i): i is CapturedFile => i.type === 'file' && i.kind === 'config');
  if (vmx === undefined) return;
  const now = parseVmx(await fsp.readFile(vmx.path), vmx.path).disks.map((d) => `${d.node}=${d.fileName}`).join('\n');
  const then = inventory.disks.map((d) => `${d.node}=${d.fileName}`).join('\n');
  if (now !== then) throw new DeltaDiskError('STATE_MISMATCH', `${inventory.vmx} changed its disks during the capture; try again`, { path: vmx.source });
}

interface MakeArgs {
  id: string;
  inventory: Capture['inventory'];
  captureDir: string;
  capturedAt: string;
  windowMs: number;
  items: CapturedItem[];
  warnings: string[];
  session: QuiesceSession;
  allowPaths: readonly string[];
  disks: ReadonlyMap<string, Disk> | undefined;
  held: Map<string, Disk>;
  claim: CaptureClaim;
}

function makeCapture(a: MakeArgs): Capture {
  let released = false;
  const chainItems = a.items.filter((i): i is CapturedChainDisk => i.type === 'chain-disk');
  const opts = { allowPaths: [a.inventory.dir, ...a.allowPaths] };
  return {
    id: a.id,
    vmDir: a.inventory.dir,
    vmx: a.inventory.vmx,
    displayName: a.inventory.displayName,
    capturedAt: a.capturedAt,
    consistency: a.session.quiesced ? 'quiesced' : 'crash-consistent',
    freezeWindowMs: Math.round(a.windowMs * 1000) / 1000,
    copiedWhileFrozen: a.items.some((i) => i.method === 'copy'),
    quiesce: {
      mode: a.session.plan.mode,
      quiesced: a.session.quiesced,
      failure: a.session.failure ?? null,
      hooks: a.session.outcomes,
      skippedHooks: a.session.plan.skipped,
      thawFailed: a.session.thawFailed,
    },
    items: a.items,
    captureDir: a.captureDir,
    inventory: a.inventory,
    problems: a.inventory.problems,
    warnings: a.warnings,
    log: a.session.log,
    openChainDisk: (item) => Disk.open(item.source, { ...opts, readOnly: true }),
    heldDisk: (item) => a.held.get(item.source),
    async checkUnchanged() {
      const changed: CapturedFile[] = [];
      for (const i of a.items) {
        if (i.type !== 'file' || i.method !== 'in-place') continue;
        const st = await fsp.stat(i.source).catch(() => undefined);
        if (st === undefined || st.size !== i.size || st.mtimeMs !== i.mtimeMs) changed.push(i);
      }
      return changed;
    },
    async release(o = {}) {
      const report: { removedCaptureDir: boolean; deletedSnapshots: string[]; failures: { disk: string; snapshot: string; error: string }[] } = {
        removedCaptureDir: false,
        deletedSnapshots: [],
        failures: [],
      };
      if (!released) {
        // Readers the copy opened on these disks keep their layers open until they close.
        const disks = [...a.held.values()];
        a.held.clear();
        for (const d of disks) await d.close().catch(() => undefined);
        await fsp.rm(a.captureDir, { recursive: true, force: true });
        await a.claim.release();
        report.removedCaptureDir = true;
        released = true;
      }
      if (o.deleteSnapshots === true) {
        for (const item of chainItems) {
          try {
            await withChainDisk(item.source, { allowPaths: opts.allowPaths, given: a.disks?.get(item.source) }, async (t) => {
              if ((await t.snapshots()).some((x) => x.name === item.snapshot.name)) await t.deleteSnapshot(item.snapshot.name);
            });
            report.deletedSnapshots.push(`${item.name}:${item.snapshot.name}`);
          } catch (err) {
            report.failures.push({ disk: item.name, snapshot: item.snapshot.name, error: err instanceof Error ? err.message : String(err) });
          }
        }
      }
      return report as ReleaseReport;
    },
  };
}
