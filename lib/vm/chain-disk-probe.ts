/**
 * Looks at a deltadisk chain disk named by a vmx (`<dev>.fileName = "x.chain"`):
 * opens it read-only (no lock is taken, a running writer is not disturbed; or, for
 * a capture that opens it next anyway, reads its descriptor alone), lists its files
 * in the set, and reports what a backup needs to know: a writer holding
 * it, an unfinished merge, capture snapshots kept for incremental backups.
 */
import path from 'node:path';
import { Disk, type DiskOutline, type OpenDiskOptions } from '../chain/disk.js';
import { Tree } from '../chain/tree.js';
import { fromSystemError, isDeltaDiskError } from '../errors.js';
import { lockPathFor, readLockFile } from '../io/writer-lock.js';
import type { VmFindings } from './vm-findings.js';
import type { ChainDiskSummary } from './vm-inventory-types.js';
import { isInside } from './vm-reference.js';

/** Prefix of the disk snapshots a capture takes (see capture-vm.ts). */
export const CAPTURE_SNAPSHOT_PREFIX = 'deltadisk-capture-';
/** Name of the disk snapshot a VM-level snapshot with this uid takes on each chain disk (see vm-snapshots.ts). */
export function vmSnapshotDiskName(uid: number): string {
  return `vm-snapshot-${uid}`;
}
export const VM_SNAPSHOT_DISK_NAME = /^vm-snapshot-(\d{1,10})$/;

export async function probeChainDisk(f: VmFindings, node: string, p: string, open: boolean): Promise<ChainDiskSummary | undefined> {
  const options = { fs: f.fs, allowPaths: [f.vmDir, ...f.allowPaths] };
  const cannotOpen = (err: unknown): undefined => {
    if (!isDeltaDiskError(err)) throw err;
    f.problem('CHAIN_DISK_ERROR', 'error', `disk ${node}: ${f.name(p)} cannot be opened: ${err.message} [${err.code}]`, { path: p, disk: node });
    return undefined;
  };
  let outline: DiskOutline;
  try {
    outline = open ? await openedOutline(p, options) : await Disk.outline(p, options);
  } catch (err) {
    return cannotOpen(err);
  }
  // The descriptor and the files' sizes are all a backup needs: `disk.info()` would
  // also account every layer's space record by record (tens of ms per disk).
  const d = outline.descriptor;
  const dir = path.dirname(p);
  const sizes: number[] = [];
  for (const l of d.layers) {
    const file = path.join(dir, l.file);
    try {
      sizes.push((await f.fs.stat(file)).size);
    } catch (err) {
      return cannotOpen(fromSystemError(err, file, `layer file ${l.file} cannot be read`));
    }
  }
  await f.addFile(p, 'chain-descriptor', { disk: node, chainDisk: true });
  let allocatedBytes = 0;
  for (const [k, l] of d.layers.entries()) {
    allocatedBytes += sizes[k]!;
    await f.addFile(path.join(dir, l.file), 'chain-delta', { disk: node, chainDisk: true, immutable: l.id !== d.active, size: sizes[k]! });
  }
  if (d.base !== null) {
    const base = await f.fs.realpath(path.resolve(dir, d.base.file));
    const allowed = isInside(f.vmDir, base) || f.allowPaths.some((a) => isInside(path.resolve(a), base));
    if (allowed) await f.addFile(base, 'chain-base', { disk: node, chainDisk: true, immutable: true });
    else f.problem('OUTSIDE_DIRECTORY', 'error', `disk ${node}: base image ${base} is outside the VM directory; pass --allow-path to include it`, { path: base, disk: node });
  }
  const op = `${p}.op`;
  if (await f.fs.lstat(op).then(() => true, () => false)) {
    await f.addFile(op, 'chain-operation', { disk: node, chainDisk: true });
    f.problem('UNFINISHED_OPERATION', 'warning', `disk ${node}: a merge in ${f.name(p)} was interrupted; it finishes on the next writable open`, { path: op, disk: node });
  }
  const holder = readLockFile(lockPathFor(p));
  if (holder !== undefined) {
    const who = holder === 'garbage' ? 'an unreadable lock file' : `pid ${holder.pid} on ${holder.host} (${holder.purpose}, since ${holder.started})`;
    f.problem('DISK_IN_USE', 'warning', `disk ${node}: ${f.name(p)} is held by ${who}`, { path: p, disk: node });
  }
  const snapshots = outline.snapshots;
  for (const s of snapshots.filter((x) => x.name.startsWith(CAPTURE_SNAPSHOT_PREFIX))) {
    f.problem('CAPTURE_SNAPSHOT', 'info', `disk ${node}: snapshot ${s.name} was taken by a backup capture (kept as the base of the next incremental backup, or left by an interrupted one)`, { path: p, disk: node });
  }
  return { virtualSize: d.virtualSize, blockSize: d.blockSize, depth: new Tree(d).path(d.active).length, layerCount: d.layers.length, allocatedBytes, snapshots };
}

/** The outline of a disk opened read-only (no lock taken), which checks every layer on the way. */
async function openedOutline(p: string, options: OpenDiskOptions): Promise<DiskOutline> {
  const disk = await Disk.open(p, { ...options, readOnly: true });
  try {
    return { descriptor: disk.descriptor, snapshots: disk.snapshots() };
  } finally {
    await disk.close();
  }
}
