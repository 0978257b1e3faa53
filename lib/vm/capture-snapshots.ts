/**
 * The capture snapshots (`deltadisk-capture-<id>`) a VM's chain disks keep between
 * backups: an incremental backup reads `changedBlocks(previous, current)`, so the
 * previous capture's snapshot must live until the next backup has finished; then it
 * goes. These helpers list them and delete all but the ones still needed.
 */
import { Disk } from '../chain/disk.js';
import { isDeltaDiskError } from '../errors.js';
import { CAPTURE_SNAPSHOT_PREFIX } from './chain-disk-probe.js';
import { inspectVm } from './vm-inventory.js';

export interface CaptureSnapshotRef {
  readonly disk: string;
  readonly node: string;
  /** The capture id (the snapshot name without its prefix). */
  readonly id: string;
  readonly name: string;
  readonly created: string;
}

/** Every capture snapshot on the VM's chain disks, oldest first. */
export async function listCaptureSnapshots(vmDir: string, o: { readonly allowPaths?: readonly string[] } = {}): Promise<CaptureSnapshotRef[]> {
  const inv = await inspectVm(vmDir, { openChains: false, ...(o.allowPaths === undefined ? {} : { allowPaths: o.allowPaths }) });
  const out: CaptureSnapshotRef[] = [];
  for (const d of inv.disks) {
    for (const s of d.chain?.snapshots ?? []) {
      if (s.name.startsWith(CAPTURE_SNAPSHOT_PREFIX) && d.path !== null) {
        out.push({ disk: d.path, node: d.node, id: s.name.slice(CAPTURE_SNAPSHOT_PREFIX.length), name: s.name, created: s.created });
      }
    }
  }
  return out.sort((a, b) => (a.created < b.created ? -1 : a.created > b.created ? 1 : 0));
}

/**
 * Deletes every capture snapshot whose id is not in `keep` (merging its layer
 * away). A disk held by another writer is skipped and reported, not waited for.
 */
export async function deleteCaptureSnapshots(
  vmDir: string,
  o: { readonly keep?: readonly string[]; readonly allowPaths?: readonly string[] } = {},
): Promise<{ deleted: CaptureSnapshotRef[]; failed: { ref: CaptureSnapshotRef; error: string }[] }> {
  const keep = new Set(o.keep ?? []);
  const deleted: CaptureSnapshotRef[] = [];
  const failed: { ref: CaptureSnapshotRef; error: string }[] = [];
  const refs = (await listCaptureSnapshots(vmDir, o)).filter((r) => !keep.has(r.id));
  const byDisk = new Map<string, CaptureSnapshotRef[]>();
  for (const r of refs) byDisk.set(r.disk, [...(byDisk.get(r.disk) ?? []), r]);
  for (const [path, list] of byDisk) {
    let disk: Disk;
    try {
      disk = await Disk.open(path, { allowPaths: [vmDir, ...(o.allowPaths ?? [])] });
    } catch (err) {
      if (!isDeltaDiskError(err)) throw err;
      for (const ref of list) failed.push({ ref, error: `${err.message} [${err.code}]` });
      continue;
    }
    try {
      for (const ref of list) {
        await disk.deleteSnapshot(ref.name);
        deleted.push(ref);
      }
    } finally {
      await disk.close();
    }
  }
  return { deleted, failed };
}
