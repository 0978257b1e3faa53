/**
 * What `inspectVm` finds in a VM directory: the file set to back up, the files left
 * out (each with a reason), the disks with their chains, the snapshot tree, and the
 * problems. These types are the contract between lib/vm, the CLI (`vm inspect
 * --json` prints a VmInventory) and the backup job.
 */
import type { SnapshotInfo } from '../chain/disk.js';

/** What a file of the set is (names follow the vSphere file-layout types where they exist). */
export type VmFileKind =
  | 'config' // .vmx / .vmtx
  | 'extended-config' // .vmxf
  | 'nvram'
  | 'snapshot-list' // .vmsd
  | 'snapshot-state' // .vmsn
  | 'snapshot-memory' // .vmem of a snapshot
  | 'suspend-state' // .vmss of a suspended VM
  | 'suspend-memory' // .vmem a suspended VM resumes from
  | 'disk-descriptor' // VMDK text descriptor, or a sparse extent carrying one
  | 'disk-extent' // flat / sparse / delta extent of a VMDK
  | 'chain-descriptor' // a deltadisk .chain
  | 'chain-delta' // a deltadisk .delta layer
  | 'chain-base' // the raw base image of a chain disk
  | 'chain-operation' // .chain.op: an unfinished merge
  | 'log'
  | 'other'; // a file nobody names, included on request (InspectOptions.includeUnknown)

export interface VmFile {
  /** Path relative to the VM directory, or absolute for a file outside it that the user allowed. */
  readonly name: string;
  /** Absolute path (symbolic links resolved). */
  readonly path: string;
  readonly kind: VmFileKind;
  readonly size: number;
  /** Device node of the disk the file belongs to (`scsi0:0`). */
  readonly disk?: string;
  /**
   * True when nothing writes the file while the VM runs (a read-only parent in a
   * snapshot chain, a snapshot's state): a capture may read it in place.
   */
  readonly immutable: boolean;
  /** Part of a deltadisk chain disk: captured by a disk snapshot, not as a file. */
  readonly chainDisk?: boolean;
}

export type SkipKind = 'swap' | 'lock' | 'live-memory' | 'suspend-state' | 'host-log' | 'change-tracking' | 'temporary' | 'capture' | 'orphan' | 'unknown' | 'log' | 'not-a-file';

export interface SkippedFile {
  readonly name: string;
  readonly kind: SkipKind;
  readonly reason: string;
}

export type ProblemCode =
  | 'MISSING_FILE'
  | 'CID_MISMATCH'
  | 'CAPACITY_MISMATCH'
  | 'OUTSIDE_DIRECTORY'
  | 'UNSAFE_PATH'
  | 'INDEPENDENT_DISK'
  | 'NEED_CONSOLIDATE'
  | 'UNKNOWN_FILE'
  | 'ORPHAN_FILE'
  | 'INVALID_DESCRIPTOR'
  | 'INVALID_EXTENT'
  | 'UNSUPPORTED_DISK'
  | 'CHAIN_LOOP'
  | 'CHAIN_TOO_DEEP'
  | 'VM_RUNNING'
  | 'UNCLEAN_SHUTDOWN'
  | 'SNAPSHOT_INCONSISTENT'
  | 'CONFIG_INCONSISTENT'
  | 'CHAIN_DISK_ERROR'
  | 'DISK_IN_USE'
  | 'UNFINISHED_OPERATION'
  | 'CAPTURE_SNAPSHOT'
  | 'ORPHAN_SNAPSHOT';

/**
 * error: a backup would be incomplete or would not boot as it is (a disk missing,
 * a broken chain); warning: a backup works but something needs a human's eye;
 * info: worth knowing.
 */
export type ProblemSeverity = 'error' | 'warning' | 'info';

export interface VmProblem {
  readonly code: ProblemCode;
  readonly severity: ProblemSeverity;
  readonly message: string;
  readonly path?: string;
  readonly disk?: string;
}

export interface VmdkExtentInfo {
  readonly access: string;
  readonly type: string;
  readonly sectors: number;
  /** As written in the descriptor (undefined for ZERO extents). */
  readonly file: string | undefined;
  /** Resolved path, or null when refused or missing. */
  readonly path: string | null;
  readonly size: number | null;
}

export interface VmdkLink {
  readonly name: string;
  readonly path: string;
  readonly createType: string;
  readonly cid: string | undefined;
  readonly parentCid: string | undefined;
  readonly parentFileNameHint: string | undefined;
  readonly capacity: number;
  /** The descriptor is embedded in a hosted sparse extent. */
  readonly embedded: boolean;
  readonly extents: readonly VmdkExtentInfo[];
}

export interface ChainDiskSummary {
  readonly virtualSize: number;
  readonly blockSize: number;
  readonly depth: number;
  readonly layerCount: number;
  readonly allocatedBytes: number;
  readonly snapshots: readonly SnapshotInfo[];
}

export interface VmDisk {
  readonly node: string;
  /** The vmx `fileName` as written. */
  readonly fileName: string;
  readonly format: 'vmdk' | 'chain';
  readonly mode: string;
  readonly independent: boolean;
  /** Resolved descriptor path, or null when refused or missing. */
  readonly path: string | null;
  readonly outside: boolean;
  /** Its files are in the file set. */
  readonly included: boolean;
  /** Virtual size in bytes, when known. */
  readonly capacity: number | null;
  /** VMDK: the running leaf first, then each parent down to the base. */
  readonly links: readonly VmdkLink[];
  /** deltadisk chain: what Disk.open read-only reports. */
  readonly chain: ChainDiskSummary | null;
}

export interface VmSnapshotDisk {
  readonly node: string;
  readonly fileName: string;
  readonly chainSnapshot?: string;
}

export interface VmSnapshotNode {
  readonly uid: number;
  readonly name: string;
  readonly description: string;
  readonly created: string | null;
  readonly parent: number | null;
  readonly file: string | null;
  readonly memoryFile: string | null;
  readonly disks: readonly VmSnapshotDisk[];
  /** The snapshot the running state descends from. */
  readonly current: boolean;
}

export interface VmInventory {
  /** The VM directory (real path). */
  readonly dir: string;
  /** The configuration file's name inside `dir`. */
  readonly vmx: string;
  readonly displayName: string | null;
  readonly suspended: boolean;
  /** Lock directories or files say the VM runs (or its host crashed). */
  readonly looksRunning: boolean;
  readonly files: readonly VmFile[];
  readonly skipped: readonly SkippedFile[];
  readonly disks: readonly VmDisk[];
  readonly snapshots: readonly VmSnapshotNode[];
  readonly problems: readonly VmProblem[];
}

export interface InspectOptions {
  /** Files or directories outside the VM directory that disks may live in. */
  readonly allowPaths?: readonly string[];
  /** Include vmware*.log files (default true). */
  readonly includeLogs?: boolean;
  /** Put files nobody names into the set instead of only reporting them (default false). */
  readonly includeUnknown?: boolean;
  /**
   * Open every chain disk read-only to check its layers (default true), so a damaged
   * one is reported as CHAIN_DISK_ERROR. A capture passes false: it opens each chain
   * disk for writing right after, which checks the same and fails on damage, and
   * reading the descriptor alone spares it one full open per disk.
   */
  readonly openChains?: boolean;
}
