/**
 * The options and results of the Disk API, in one place so the modules that
 * implement parts of it share them without importing the Disk class.
 */
import type { Descriptor } from '../format/descriptor.js';
import type { FileSystem } from '../io/file-system.js';
import type { CompactResult } from './compact.js';
import type { ConsolidationStep } from './consolidate-plan.js';
import type { MergeResult } from './merge.js';

export interface DiskOptions {
  /** The file system to use; default: the real one. Tests pass in-memory or fault-injecting ones. */
  readonly fs?: FileSystem;
  /** Files or directories outside the disk's directory that its descriptor may name (a base image). */
  readonly allowPaths?: readonly string[];
  /** Take the cross-process writer lock; default: true on the real file system, false on others. */
  readonly lock?: boolean;
  /**
   * Check every block read from a delta against its CRC, so damaged data ends in
   * CHECKSUM_MISMATCH instead of being returned; default false. Costs one CRC-32 per
   * block and, for a block read only in part, reading it whole (docs/DESIGN.md has
   * figures). Copies (partial writes, merges, compaction) and `check({ readData })`
   * verify regardless.
   */
  readonly verifyReads?: boolean;
}

export interface CreateDiskOptions extends DiskOptions {
  /** Virtual size in bytes; required without `base`, must equal the base's size with it. */
  readonly size?: number;
  /** A raw image to use as the read-only base; it is never modified. */
  readonly base?: string;
  /** 4 KiB … 1 MiB, a power of two; default 64 KiB. */
  readonly blockSize?: number;
  /** Store blocks identical to ones already stored as references; default true. */
  readonly dedup?: boolean;
}

export interface OpenDiskOptions extends DiskOptions {
  readonly readOnly?: boolean;
}

/**
 * A snapshot's identity when it is recreated elsewhere (a restore rebuilding a disk
 * from a backup): the same id and time, so what names it (a VM's snapshot tree, the
 * next incremental backup) still finds it. Taking a snapshot normally sets neither.
 */
export interface SnapshotIdentity {
  /** A UUID, unique in the disk. */
  readonly id?: string;
  /** ISO 8601 time. */
  readonly created?: string;
}

export const SNAPSHOT_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

export interface SnapshotInfo {
  readonly id: string;
  readonly name: string;
  readonly description: string;
  /** ISO 8601 time the snapshot was taken. */
  readonly created: string;
  /** Id of the snapshot this one was taken after (its parent in the tree), or null. */
  readonly parent: string | null;
  /** True for the snapshot the current state was last taken from or reverted to. */
  readonly current: boolean;
  readonly layer: string;
  /** A bookmark (Disk.bookmark): readable, not revertible to; never a parent of others. */
  readonly bookmark: boolean;
}

/** What `Disk.outline` reads: the descriptor and the snapshot list, no layer opened. */
export interface DiskOutline {
  readonly descriptor: Descriptor;
  readonly snapshots: readonly SnapshotInfo[];
}

export interface LayerInfo {
  readonly id: string;
  readonly file: string;
  readonly parent: string | null;
  readonly snapshot: string | null;
  readonly active: boolean;
  /** On the path of the current state. */
  readonly current: boolean;
  readonly fileBytes: number;
  readonly dataBlocks: number;
  readonly zeroBlocks: number;
  readonly refBlocks: number;
  /** Bytes of the blocks this layer maps (data, zero and references). */
  readonly logicalBytes: number;
  /** Bytes of block data stored in this layer that some block reads (mapped data). */
  readonly storedBytes: number;
  /** Bytes its deduplicated blocks would have taken. */
  readonly dedupSavedBytes: number;
  /** Bytes of data no block reads any more (reclaimed by compaction). */
  readonly garbageBytes: number;
}

export interface DiskInfo {
  readonly path: string;
  readonly virtualSize: number;
  readonly blockSize: number;
  readonly dedup: boolean;
  readonly base: { readonly file: string; readonly size: number } | null;
  /** Layers from the base to the active layer. */
  readonly depth: number;
  readonly layerCount: number;
  readonly snapshotCount: number;
  readonly layers: readonly LayerInfo[];
  /** Bytes of the blocks the layers map, summed over layers. */
  readonly logicalBytes: number;
  /** Bytes the delta files take (sum of file sizes). */
  readonly allocatedBytes: number;
  /** Bytes of block data stored in the deltas that some block still reads. */
  readonly storedBytes: number;
  /** Bytes that deduplicated blocks would have taken. */
  readonly dedupSavedBytes: number;
}

export interface RevertOptions {
  /** First keep the current state as a snapshot with this name. */
  readonly keepCurrentAs?: string;
}

export interface ConsolidateOptions {
  /** Keep every path at most this many layers deep, merging layers without snapshots. */
  readonly maxDepth?: number;
  /** Plan only: report what would be done, change nothing. */
  readonly dryRun?: boolean;
  /** Also compact layers whose garbage reaches this share of their log (default 0.25; 1 disables). */
  readonly compactThreshold?: number;
}

export interface ConsolidateResult {
  readonly dryRun: boolean;
  readonly depthBefore: number;
  readonly depthAfter: number;
  /** Every step, done (or planned, in a dry run), in order. */
  readonly steps: readonly ConsolidationStep[];
  readonly merges: readonly MergeResult[];
  readonly droppedLayers: number;
  readonly compacted: readonly CompactResult[];
  /** Why a depth cap could not be met, if it could not. */
  readonly blocked: string | undefined;
}

export interface DedupResult {
  readonly layers: readonly CompactResult[];
  readonly dedupedBlocks: number;
  readonly zeroedBlocks: number;
  readonly bytesBefore: number;
  readonly bytesAfter: number;
}

