/**
 * VM-level snapshots of a VM whose disks are deltadisk chains, recorded VMware-style:
 * a `.vmsn` per snapshot (the configuration as it was, and which disk snapshot of each
 * disk belongs to it), an optional memory-state file beside it (`.vmem`), and the
 * `.vmsd` as the tree. See docs/FORMAT.md ("VM snapshots").
 *
 * The vmsd is the commit point and never names a snapshot the disks do not have:
 *  create: lock VM and all disks → (copy the memory file) → freeze hooks → one disk
 *          snapshot per disk, all taken together → thaw → write the vmsn → replace the vmsd.
 *  delete: check the files to remove → replace the vmsd without it → delete each
 *          disk's snapshot (merging) → remove vmem, then vmsn.
 * Every file name the vmsd or a vmsn gives is data: it is used only when it names a
 * regular file inside the VM directory reached without a symbolic link
 * (VmSnapshotContext.ownFile), and checked before the vmsd is rewritten.
 *  revert: mark the vmsd `revertPending` → revert each disk → restore the vmx from the
 *          vmsn → replace the vmsd (current = the snapshot, mark removed).
 * A crash anywhere leaves extra files or disk snapshots, never a dangling name; the
 * next changing operation recovers (vm-snapshot-context.ts), and `vm inspect`
 * reports what is left meanwhile.
 */
import fsp from 'node:fs/promises';
import path from 'node:path';
import { DeltaDiskError, throwIfAborted } from '../errors.js';
import { encodeVmsn, type VmsnDisk } from '../format/vmsn.js';
import { atomicReplace, createDurable, tempNameFor } from '../io/atomic-replace.js';
import { vmSnapshotDiskName } from './chain-disk-probe.js';
import { FileCloner } from './file-clone.js';
import { hasHooks, planHooks, type HookSpec } from './hooks/hook-plan.js';
import { QuiesceSession, type HookLogEntry } from './hooks/quiesce-session.js';
import type { HookOutcome } from './hooks/run-hook.js';
import { REVERT_PENDING_KEY, VmSnapshotContext, type VmSnapshotOptions } from './vm-snapshot-context.js';
import type { VmsdSnapshot } from './vmsd-file.js';

export interface CreateVmSnapshotOptions extends VmSnapshotOptions {
  readonly description?: string;
  /** A memory-state file to keep with the snapshot (copied, or cloned where possible). */
  readonly memory?: string;
  readonly hooks?: HookSpec;
  readonly signal?: AbortSignal;
  readonly onLog?: (entry: HookLogEntry) => void;
  readonly killGraceMs?: number;
}

export interface VmSnapshotResult {
  readonly uid: number;
  readonly name: string;
  readonly created: string;
  readonly vmsn: string;
  readonly memory: string | null;
  readonly disks: readonly VmsnDisk[];
  readonly consistency: 'quiesced' | 'crash-consistent';
  /** Milliseconds between the end of the freeze hooks and the start of the thaw hooks. */
  readonly freezeWindowMs: number;
  readonly hooks: readonly HookOutcome[];
  readonly warnings: readonly string[];
  /** What recovery of an earlier interrupted operation did first. */
  readonly recovered: readonly string[];
}

const MAX_NAME = 255;

function checkName(name: string): void {
  // eslint-disable-next-line no-control-regex
  if (typeof name !== 'string' || name.length === 0 || name.length > MAX_NAME || /[\x00-\x1f\x7f]/.test(name) || /^#\d+$/.test(name)) {
    throw new DeltaDiskError('INVALID_ARGUMENT', `a VM snapshot name must be 1 to ${MAX_NAME} printable characters, not of the form #<uid>`);
  }
}

/** Finds a snapshot by name or `#<uid>`. @throws SNAPSHOT_NOT_FOUND, INVALID_ARGUMENT (ambiguous) */
export function findVmSnapshot<T extends { readonly uid: number }>(list: readonly T[], ref: string, nameOf: (s: T) => string): T {
  const m = /^#(\d+)$/.exec(ref);
  const hits = m !== null ? list.filter((s) => s.uid === Number(m[1])) : list.filter((s) => nameOf(s) === ref);
  if (hits.length === 0) throw new DeltaDiskError('SNAPSHOT_NOT_FOUND', `the VM has no snapshot ${JSON.stringify(ref)}`);
  if (hits.length > 1) throw new DeltaDiskError('INVALID_ARGUMENT', `several snapshots are named ${JSON.stringify(ref)}; name one as #<uid>`);
  return hits[0]!;
}

async function withContext<T>(target: string, o: VmSnapshotOptions, purpose: string, fn: (ctx: VmSnapshotContext) => Promise<T>): Promise<T> {
  const ctx = await VmSnapshotContext.open(target, o, purpose);
  try {
    await ctx.recover(finishRevert);
    return await fn(ctx);
  } finally {
    await ctx.close();
  }
}

/**
 * Snapshots every chain disk of the VM at one instant, with the configuration.
 * @throws SNAPSHOT_EXISTS (name in use), UNSUPPORTED (a VMDK disk), LOCKED, HOOK_FAILED, INTERRUPTED, …
 */
export async function createVmSnapshot(target: string, name: string, o: CreateVmSnapshotOptions = {}): Promise<VmSnapshotResult> {
  checkName(name);
  const description = o.description ?? '';
  const plan = await planHooks(o.hooks ?? {});
  if (o.memory !== undefined) await fsp.stat(o.memory).catch(() => {
    throw new DeltaDiskError('NOT_FOUND', `memory file ${o.memory} does not exist`, { path: o.memory });
  });
  return withContext(target, o, 'vm snapshot create', async (ctx) => {
    if (ctx.disks.length === 0) throw new DeltaDiskError('VM_INVALID', `${ctx.loc.vmx} has no chain disk to snapshot`);
    if (ctx.vmsd.snapshots.some((s) => s.displayName === name)) throw new DeltaDiskError('SNAPSHOT_EXISTS', `the VM has a snapshot named ${JSON.stringify(name)} already`);
    const uid = ctx.vmsd.lastUID + 1;
    const vmsnName = ctx.vmsnName(uid);
    if (await ctx.exists(vmsnName)) throw new DeltaDiskError('ALREADY_EXISTS', `${vmsnName} exists but the vmsd does not name it; remove it or fix the vmsd`);
    const config = await ctx.readConfig();
    const memoryName = o.memory === undefined ? null : ctx.vmemName(uid);
    const taken: { d: (typeof ctx.disks)[number]; name: string; id: string }[] = [];
    let windowMs = 0;
    let session: QuiesceSession | undefined;
    let created = '';
    let disks: VmsnDisk[] = [];
    try {
      if (o.memory !== undefined) await storeMemory(ctx, o.memory, memoryName!);
      session = new QuiesceSession(
        plan,
        { vmDir: ctx.loc.dir, vmx: ctx.loc.vmx, vmName: ctx.vmx.displayName ?? ctx.loc.vmx, backupId: vmSnapshotDiskName(uid), operation: 'snapshot' },
        { ...(o.signal === undefined ? {} : { signal: o.signal }), ...(o.onLog === undefined ? {} : { onLog: o.onLog }), ...(o.killGraceMs === undefined ? {} : { killGraceMs: o.killGraceMs }) },
      );
      try {
        await session.freeze();
        const t0 = performance.now();
        throwIfAborted(o.signal, 'the snapshot was interrupted');
        // Every disk is locked by us, so none changes: taking the snapshots together is one instant, sooner.
        const results = await Promise.allSettled(ctx.disks.map((d) => d.disk.snapshot(vmSnapshotDiskName(uid), `VM snapshot ${uid}: ${name}`.slice(0, 4096))));
        results.forEach((r, i) => {
          if (r.status === 'fulfilled') taken.push({ d: ctx.disks[i]!, name: r.value.name, id: r.value.id });
        });
        const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
        if (failed !== undefined) throw failed.reason;
        windowMs = performance.now() - t0;
      } finally {
        await session.thaw();
      }
      // Interrupted while thawing: the thaw finished; now honour the interruption before anything is committed.
      throwIfAborted(o.signal, 'the snapshot was interrupted; nothing was recorded');
      created = new Date().toISOString();
      disks = taken.map((x) => ({ node: x.d.node, fileName: x.d.fileName, snapshotId: x.id, snapshotName: x.name }));
      const consistency = session.quiesced ? 'quiesced' : 'crash-consistent';
      await createDurable(
        ctx.fs,
        path.join(ctx.loc.dir, vmsnName),
        encodeVmsn({ metadata: { uid, name, description, created, vmx: ctx.loc.vmx, disks, memory: memoryName === null ? null : { file: memoryName, size: (await ctx.fs.stat(path.join(ctx.loc.dir, memoryName))).size }, consistency }, config }),
      );
    } catch (err) {
      // Nothing names these yet: undo them now (recovery would do it next time).
      for (const x of taken) await x.d.disk.deleteSnapshot(x.name).catch(() => undefined);
      if (memoryName !== null) await ctx.removeFile(memoryName).catch(() => undefined);
      await ctx.removeFile(vmsnName).catch(() => undefined);
      throw err;
    }
    // The commit. From here on nothing is undone here: if replacing the vmsd failed
    // after its rename, it names a complete snapshot; if before, recovery removes the rest.
    const parent = ctx.vmsd.snapshots.some((s) => s.uid === ctx.vmsd.current) ? ctx.vmsd.current : undefined;
    const record: VmsdSnapshot = {
      uid,
      parent,
      fileName: vmsnName,
      displayName: name,
      description,
      created,
      type: undefined,
      disks: disks.map((d) => ({ node: d.node, fileName: d.fileName, chainSnapshot: d.snapshotId })),
      extra: [],
    };
    await ctx.writeVmsd({ ...ctx.vmsd, lastUID: uid, current: uid, snapshots: [...ctx.vmsd.snapshots, record], issues: [] });
    const warnings: string[] = [];
    if (hasHooks(o.hooks ?? {}) && !session.quiesced) warnings.push(`not quiesced: ${session.failure ?? 'unknown'}`);
    if (session.thawFailed) warnings.push('a thaw hook failed: check that the guest is running normally');
    for (const s of plan.skipped) warnings.push(`hook ${s.name} was not run: ${s.reason}`);
    return { uid, name, created, vmsn: vmsnName, memory: memoryName, disks, consistency: session.quiesced ? 'quiesced' : 'crash-consistent', freezeWindowMs: windowMs, hooks: session.outcomes, warnings, recovered: ctx.recovered };
  });
}

async function storeMemory(ctx: VmSnapshotContext, source: string, name: string): Promise<void> {
  const target = path.join(ctx.loc.dir, name);
  const tmp = tempNameFor(target);
  try {
    await new FileCloner('auto').clone(path.resolve(source), tmp);
    const h = await fsp.open(tmp, 'r+');
    try {
      await h.datasync();
    } finally {
      await h.close();
    }
    await fsp.link(tmp, target);
    await fsp.unlink(tmp);
    await ctx.fs.syncDir(ctx.loc.dir);
  } catch (err) {
    await fsp.unlink(tmp).catch(() => undefined);
    throw err;
  }
}

/**
 * Makes the VM's disks and configuration those of snapshot `ref` (name or #uid);
 * the current state of the disks is discarded.
 * @returns the snapshot's uid and the disks reverted; `memoryOut` receives the memory state
 */
export async function revertVmSnapshot(target: string, ref: string, o: VmSnapshotOptions & { readonly memoryOut?: string } = {}): Promise<{ uid: number; disks: string[]; recovered: readonly string[] }> {
  return withContext(target, o, 'vm snapshot revert', async (ctx) => {
    const s = findVmSnapshot(ctx.vmsd.snapshots, ref, (x) => x.displayName);
    const vmsn = await ctx.readVmsn(s.fileName ?? ctx.vmsnName(s.uid));
    if (o.memoryOut !== undefined && vmsn.metadata.memory === null) throw new DeltaDiskError('INVALID_ARGUMENT', `snapshot ${s.displayName} has no memory state`);
    // The vmsn names its memory file: guarded like every vmsd-named file, before anything changes.
    let memoryPath: string | null = null;
    if (o.memoryOut !== undefined) {
      memoryPath = await ctx.ownFile(vmsn.metadata.memory!.file, `memory file of snapshot ${s.uid}`);
      if (memoryPath === null) throw new DeltaDiskError('NOT_FOUND', `the memory file of snapshot ${s.displayName} does not exist`, { path: path.resolve(ctx.loc.dir, vmsn.metadata.memory!.file) });
    }
    for (const d of vmsn.metadata.disks) {
      const open = await ctx.openDisk(d.node, d.fileName);
      if (!open.disk.snapshots().some((x) => x.id === d.snapshotId)) {
        throw new DeltaDiskError('STATE_MISMATCH', `disk ${d.fileName} no longer has the snapshot of VM snapshot ${s.uid}`, { path: open.path });
      }
    }
    await ctx.writeVmsd({ ...ctx.vmsd, extra: [...ctx.vmsd.extra, [REVERT_PENDING_KEY, String(s.uid)]] });
    await finishRevert(ctx, s.uid);
    if (o.memoryOut !== undefined) await new FileCloner('auto').clone(memoryPath!, path.resolve(o.memoryOut));
    return { uid: s.uid, disks: vmsn.metadata.disks.map((d) => d.fileName), recovered: ctx.recovered };
  });
}

/** The revert itself, idempotent: reverts disks, restores the vmx, clears the mark. */
async function finishRevert(ctx: VmSnapshotContext, uid: number): Promise<void> {
  const s = ctx.vmsd.snapshots.find((x) => x.uid === uid);
  const rest = ctx.vmsd.extra.filter(([k]) => k.toLowerCase() !== REVERT_PENDING_KEY.toLowerCase());
  if (s === undefined) {
    await ctx.writeVmsd({ ...ctx.vmsd, extra: rest });
    return;
  }
  const vmsn = await ctx.readVmsn(s.fileName ?? ctx.vmsnName(uid));
  for (const d of vmsn.metadata.disks) {
    const open = await ctx.openDisk(d.node, d.fileName);
    const snap = open.disk.snapshots().find((x) => x.id === d.snapshotId);
    if (snap === undefined) throw new DeltaDiskError('STATE_MISMATCH', `disk ${d.fileName} no longer has the snapshot of VM snapshot ${uid}`, { path: open.path });
    await open.disk.revert(snap.name);
  }
  await atomicReplace(ctx.fs, ctx.vmxPath, vmsn.config);
  await ctx.writeVmsd({ ...ctx.vmsd, current: uid, extra: rest });
}

/** Deletes snapshot `ref` (name or #uid): its disk snapshots are merged away, its files removed. */
export async function deleteVmSnapshot(target: string, ref: string, o: VmSnapshotOptions = {}): Promise<{ uid: number; recovered: readonly string[] }> {
  return withContext(target, o, 'vm snapshot delete', async (ctx) => {
    const s = findVmSnapshot(ctx.vmsd.snapshots, ref, (x) => x.displayName);
    const snapshots = ctx.vmsd.snapshots.filter((x) => x.uid !== s.uid).map((x) => (x.parent === s.uid ? { ...x, parent: s.parent } : x));
    const current = ctx.vmsd.current === s.uid ? s.parent : ctx.vmsd.current;
    // The files to remove are checked before the commit: a hostile or broken name is refused with nothing changed.
    const stateFile = s.fileName === undefined ? null : await ctx.ownFile(s.fileName, `state file of snapshot ${s.uid}`);
    const memoryFile = await ctx.ownFile(ctx.vmemName(s.uid), `memory file of snapshot ${s.uid}`);
    await ctx.writeVmsd({ ...ctx.vmsd, snapshots, current });
    for (const d of s.disks) {
      if (d.chainSnapshot === undefined) continue;
      const open = await ctx.openDisk(d.node, d.fileName);
      const snap = open.disk.snapshots().find((x) => x.id === d.chainSnapshot);
      if (snap !== undefined) await open.disk.deleteSnapshot(snap.name);
    }
    if (memoryFile !== null) await ctx.removeFile(memoryFile);
    if (stateFile !== null) await ctx.removeFile(stateFile);
    await ctx.fs.syncDir(ctx.loc.dir);
    return { uid: s.uid, recovered: ctx.recovered };
  });
}
