/**
 * A chain disk as a capture reaches it, whoever holds it:
 *
 *  - `open`: nobody does; the capture opens it (taking the writer lock for the
 *    milliseconds of the window) and closes it after;
 *  - `given`: this process holds it (a hypervisor embedding deltadisk hands it in);
 *  - `served`: `deltadisk serve` holds it; snapshots are taken and deleted through
 *    the disk's control channel, between two NBD requests, atomically with respect
 *    to writes in flight (the running export carries on in its new active layer).
 *
 * Reading a capture point afterwards needs none of this: records are only appended
 * (and snapshot layers sealed), so a read-only open reads them whoever writes the
 * disk, and so does the capture's own open once downgraded to read-only after the
 * window (`keepReading`).
 */
import { Disk } from '../chain/disk.js';
import { DeltaDiskError, isDeltaDiskError } from '../errors.js';
import { findControl, type ControlClient } from '../nbd/control-client.js';

/** Chain disks of one VM opened, snapshotted or cleaned up at once, at most. */
export const DISKS_AT_ONCE = 4;

export interface CaptureTarget {
  readonly path: string;
  readonly via: 'open' | 'given' | 'served';
  readonly virtualSize: number;
  readonly blockSize: number;
  /** The serving process's pid (`served` only). */
  readonly servedBy?: number;
  snapshots(): Promise<{ readonly name: string; readonly description: string }[]>;
  /** Makes acknowledged writes durable (a served disk's snapshot does this itself). */
  flush(): Promise<void>;
  snapshot(name: string, description: string): Promise<{ id: string; name: string; created: string }>;
  deleteSnapshot(name: string): Promise<void>;
  /**
   * Ends the hold after the window: a disk the target opened gives up its writer
   * lock and stays open read-only (Disk.downgrade), and is returned for reading the
   * capture; anything else is let go as by `close` (undefined).
   */
  keepReading(): Promise<Disk | undefined>;
  /** Closes what the target opened (never a given disk). Idempotent. */
  close(): Promise<void>;
}

function localTarget(path: string, disk: Disk, via: 'open' | 'given'): CaptureTarget {
  return {
    path,
    via,
    virtualSize: disk.virtualSize,
    blockSize: disk.blockSize,
    snapshots: () => Promise.resolve(disk.snapshots()),
    flush: () => disk.flush(),
    // A bookmark: one descriptor replacement inside the freeze, and no merge when the
    // next backup deletes it (a serving process takes a snapshot: its channel has no bookmark).
    snapshot: (name, description) => disk.bookmark(name, description),
    deleteSnapshot: (name) => disk.deleteSnapshot(name),
    keepReading: async () => {
      if (via !== 'open') return undefined;
      await disk.downgrade();
      return disk;
    },
    close: () => (via === 'open' ? disk.close() : Promise.resolve()),
  };
}

function servedTarget(path: string, control: ControlClient): CaptureTarget {
  return {
    path,
    via: 'served',
    virtualSize: control.hello.virtualSize,
    blockSize: control.hello.blockSize,
    servedBy: control.hello.pid,
    snapshots: () => control.list(),
    flush: () => Promise.resolve(),
    snapshot: async (name, description) => (await control.snapshot(name, description)).snapshot,
    deleteSnapshot: (name) => control.deleteSnapshot(name),
    keepReading: () => control.close().then(() => undefined),
    close: () => control.close(),
  };
}

/**
 * Reaches the chain disk at `path`: the given handle, else an open of our own, else
 * (when another process holds the writer lock) the serving process's control channel.
 * @throws LOCKED (held by a process that does not serve it), and Disk.open's errors
 */
export async function reachChainDisk(path: string, o: { readonly allowPaths: readonly string[]; readonly given?: Disk | undefined }): Promise<CaptureTarget> {
  if (o.given !== undefined) return localTarget(path, o.given, 'given');
  try {
    return localTarget(path, await Disk.open(path, { allowPaths: o.allowPaths }), 'open');
  } catch (err) {
    if (!isDeltaDiskError(err, 'LOCKED')) throw err;
    const control = await findControl(path).catch(() => undefined);
    if (control !== undefined) return servedTarget(path, control);
    throw new DeltaDiskError('LOCKED', `${err.message}; a running VM's chain disks can be captured only when served by \`deltadisk serve\` (its control channel), by the process that holds them (captureVm's \`disks\` option), or with the VM stopped`, {
      path,
      holder: err.holder,
      cause: err,
    });
  }
}

/** Runs `fn` on the disk at `path` reached as reachChainDisk does, closing what it opened. */
export async function withChainDisk<T>(path: string, o: { readonly allowPaths: readonly string[]; readonly given?: Disk | undefined }, fn: (t: CaptureTarget) => Promise<T>): Promise<T> {
  const t = await reachChainDisk(path, o);
  try {
    return await fn(t);
  } finally {
    await t.close().catch(() => undefined);
  }
}

/**
 * Deletes the snapshots of the chain disk at `path` that `pick` chooses from its
 * list, and returns their names. Bookmarks of a disk nobody holds go with one
 * descriptor replacement (Disk.deleteBookmarks: no layer opened); anything else
 * (snapshots, a disk held by this process or served) through the disk as
 * reachChainDisk reaches it.
 */
export async function deleteSnapshotsOf(
  path: string,
  pick: (list: readonly { readonly name: string; readonly description: string }[]) => string[],
  o: { readonly allowPaths: readonly string[]; readonly given?: Disk | undefined },
): Promise<string[]> {
  if (o.given === undefined) {
    const names = pick((await Disk.outline(path)).snapshots);
    if (names.length === 0) return [];
    try {
      const deleted = await Disk.deleteBookmarks(path, names);
      if (deleted !== undefined) return deleted;
    } catch (err) {
      if (!isDeltaDiskError(err, 'LOCKED')) throw err; // held by a server: through its channel
    }
  }
  return withChainDisk(path, o, async (t) => {
    const names = pick(await t.snapshots());
    for (const name of names) await t.deleteSnapshot(name);
    return names;
  });
}
