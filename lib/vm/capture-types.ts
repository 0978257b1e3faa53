/**
 * The hand-off between capturing a VM and copying it somewhere (the backup job).
 *
 *     const capture = await captureVm(vmDir, { hooks, id: backupId, signal });
 *     try {
 *       for (const item of capture.items) {
 *         if (item.type === 'chain-disk') {
 *           const disk = await capture.openChainDisk(item);          // read-only
 *           const reader = await disk.openSnapshot(item.snapshot.name);
 *           // incremental: disk.changedBlocks(previousSnapshotName, item.snapshot.name)
 *           … read, store …
 *           await reader.close(); await disk.close();
 *         } else {
 *           … read item.path (a clone, or the original for method 'in-place') …
 *         }
 *       }
 *       const changed = await capture.checkUnchanged();             // in-place files must not have moved
 *       … record capture.consistency, capture.freezeWindowMs, capture.quiesce in the manifest …
 *     } finally {
 *       await capture.release({ deleteSnapshots: true });           // or keep the last one for incrementals
 *     }
 *
 * Everything in a Capture is plain data except its methods, so the data part
 * can be written into a manifest as it is (JSON-safe).
 */
import type { Disk } from '../chain/disk.js';
import type { ClonePolicy } from './file-clone.js';
import type { HookSpec, QuiesceMode } from './hooks/hook-plan.js';
import type { HookLogEntry } from './hooks/quiesce-session.js';
import type { HookOutcome } from './hooks/run-hook.js';
import type { VmFileKind, VmInventory, VmProblem } from './vm-inventory-types.js';

export type ConsistencyLevel = 'quiesced' | 'crash-consistent';

/** A file captured as a clone or copy in the capture directory, or read in place. */
export interface CapturedFile {
  readonly type: 'file';
  /** The file's name in the VM (relative to the VM directory, absolute outside it). */
  readonly name: string;
  readonly kind: VmFileKind;
  /** The original file. */
  readonly source: string;
  /** Where to read the captured content: the clone, or `source` for `in-place`. */
  readonly path: string;
  /**
   * `reflink`: a clone sharing extents (instant); `copy`: copied while frozen (the
   * freeze window includes it); `in-place`: not copied because nothing writes it
   * while the VM runs (read-only chain parents, snapshot state) — call
   * `checkUnchanged()` after reading to prove it stayed so.
   */
  readonly method: 'reflink' | 'copy' | 'in-place';
  readonly size: number;
  readonly mtimeMs: number;
  readonly disk?: string;
}

/** A deltadisk chain disk, captured as a snapshot of the disk. */
export interface CapturedChainDisk {
  readonly type: 'chain-disk';
  /** The `.chain` descriptor's name in the VM. */
  readonly name: string;
  readonly node: string;
  /** The descriptor's path. */
  readonly source: string;
  readonly method: 'snapshot';
  /** The disk snapshot holding the captured state (`deltadisk-capture-<id>`). */
  readonly snapshot: { readonly id: string; readonly name: string; readonly created: string };
  readonly virtualSize: number;
  readonly blockSize: number;
}

export type CapturedItem = CapturedFile | CapturedChainDisk;

export interface QuiesceReport {
  readonly mode: QuiesceMode;
  /** Hooks ran and all froze. */
  readonly quiesced: boolean;
  /** Why the guest is not quiesced although hooks were given (optional mode). */
  readonly failure: string | null;
  /** Every hook run, in order: freeze, then thaw or freezeFail. */
  readonly hooks: readonly HookOutcome[];
  /** Files in the hooks directory that were not run, with the reason. */
  readonly skippedHooks: readonly { readonly name: string; readonly reason: string }[];
  readonly thawFailed: boolean;
}

export interface Capture {
  readonly id: string;
  readonly vmDir: string;
  readonly vmx: string;
  readonly displayName: string | null;
  /** The instant captured: when the window opened (ISO 8601). */
  readonly capturedAt: string;
  readonly consistency: ConsistencyLevel;
  /**
   * Milliseconds the VM was kept frozen by the capture itself: from the end of the
   * last freeze hook to the start of the first thaw hook (the whole capture when no
   * hooks ran). Hook run times are in `quiesce.hooks`.
   */
  readonly freezeWindowMs: number;
  /** Some files had to be copied (no reflink) inside the window. */
  readonly copiedWhileFrozen: boolean;
  readonly quiesce: QuiesceReport;
  readonly items: readonly CapturedItem[];
  /** The directory holding the clones (removed by release). */
  readonly captureDir: string;
  /** The inventory the capture was made from (files, disks, snapshot tree). */
  readonly inventory: VmInventory;
  readonly problems: readonly VmProblem[];
  /** Human-readable notes (quiesce fell back, a thaw hook failed, files copied while frozen). */
  readonly warnings: readonly string[];
  /** Hook output, bounded (see QuiesceSession.log). */
  readonly log: readonly HookLogEntry[];

  /** Opens a captured chain disk read-only (take the snapshot with `openSnapshot(item.snapshot.name)`). */
  openChainDisk(item: CapturedChainDisk): Promise<Disk>;
  /**
   * The capture's own handle on a chain disk it opened (not one given in `disks`,
   * nor a served one): read-only since the window closed (Disk.downgrade), and
   * closed by `release`, so do not close it. Reading through it saves opening the
   * disk again; undefined where there is none, or after `release`.
   */
  heldDisk(item: CapturedChainDisk): Disk | undefined;
  /** The in-place items whose size, mtime or inode changed since the capture (should be none). */
  checkUnchanged(): Promise<CapturedFile[]>;
  /** Deletes the clones and, when asked, the capture snapshots. Idempotent. */
  release(options?: { readonly deleteSnapshots?: boolean }): Promise<ReleaseReport>;
}

export interface ReleaseReport {
  readonly removedCaptureDir: boolean;
  readonly deletedSnapshots: readonly string[];
  /** Snapshots that could not be deleted (e.g. LOCKED: the VM holds the disk): delete them later. */
  readonly failures: readonly { readonly disk: string; readonly snapshot: string; readonly error: string }[];
}

export interface CaptureOptions {
  /** Paths outside the VM directory its disks may live in (see inspectVm). */
  readonly allowPaths?: readonly string[];
  readonly hooks?: HookSpec;
  /** The backup id: names the capture snapshots and directory, and is told to the hooks. Default: generated. */
  readonly id?: string;
  /** The capture snapshots' description; default `capture <id> of <vmx>`. */
  readonly snapshotDescription?: string;
  /** Told to the hooks as DELTADISK_OPERATION; default `backup`. */
  readonly operation?: string;
  /** Where clones go; default `<vmDir>/.deltadisk-capture-<id>` (same file system, so reflinks work). */
  readonly captureDir?: string;
  readonly clone?: ClonePolicy;
  /** Read immutable files in place instead of cloning them (default true). */
  readonly inPlace?: boolean;
  readonly includeLogs?: boolean;
  readonly includeUnknown?: boolean;
  /**
   * Capture even when the inventory has error-level problems (a missing extent, a
   * CID mismatch, a disk outside the directory that was not allowed: the capture
   * would lack or misrepresent a disk). Default false: such a VM is VM_INVALID.
   */
  readonly acceptProblems?: boolean;
  /**
   * Chain disks this process already has open for writing (a hypervisor embedding
   * deltadisk), by descriptor path: the capture snapshots them through these
   * handles instead of opening them (which a held writer lock would refuse). The
   * caller pauses its own writes to them for the capture (its freeze).
   */
  readonly disks?: ReadonlyMap<string, Disk>;
  /**
   * Called once the VM is inventoried; the capture goes on preparing (reaching and
   * flushing the disks, making the capture directory) and waits for the promise it
   * returns, however it settles, before the freeze. For the caller's own
   * preparation (a backup finding each disk's previous backup), which then overlaps
   * the capture's and never runs inside the window.
   */
  readonly prepare?: (inventory: VmInventory) => Promise<unknown>;
  /** Aborting (SIGINT, SIGTERM) stops the capture; thaw hooks still run. */
  readonly signal?: AbortSignal;
  readonly onLog?: (entry: HookLogEntry) => void;
  /** For tests: grace between SIGTERM and SIGKILL of a hook. */
  readonly killGraceMs?: number;
}
