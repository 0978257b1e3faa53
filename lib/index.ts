/**
 * deltadisk: copy-on-write virtual disks with O(1) snapshots, and crash-consistent,
 * deduplicated VM backups.
 *
 * This is the only import path users need:
 *
 *     import { Disk } from 'deltadisk';
 *     const disk = await Disk.create('vm/disk.chain', { size: 8 * 2 ** 30 });
 *     await disk.write(0, bootSector);
 *     await disk.snapshot('before-upgrade');
 *
 * Property-testing helpers live in `deltadisk/testing`.
 */
export { DeltaDiskError, ERROR_CODES, fromSystemError, isDeltaDiskError, type ErrorCode } from './errors.js';

export { Disk } from './chain/disk.js';
export type {
  ConsolidateOptions,
  ConsolidateResult,
  DedupResult,
  CreateDiskOptions,
  DiskInfo,
  DiskOptions,
  LayerInfo,
  OpenDiskOptions,
  RevertOptions,
  SnapshotInfo,
} from './chain/disk.js';
export { DiskReader, type Extent } from './chain/disk-reader.js';
export type { MergeResult } from './chain/merge.js';
export type { CompactResult } from './chain/compact.js';
export type { CheckFinding, CheckOptions, CheckReport, FindingKind } from './chain/check.js';
export type { ConsolidationStep } from './chain/consolidate-plan.js';
export { flatten, type FlattenOptions } from './chain/flatten.js';
export { exportRawFile, rawChunks } from './chain/export-raw.js';

// Serving a disk over NBD, and its control channel (lib/nbd).
export { serveDisk, type ServeDiskOptions, type ServedDisk } from './nbd/serve-disk.js';
export { NbdServer, type BoundAddress, type ListenAddress, type NbdServerOptions } from './nbd/server.js';
export { DiskExports, type DiskExportsOptions, type ExportInfo, type LiveSnapshot } from './nbd/disk-exports.js';
export { ControlServer, controlPathFor } from './nbd/control-server.js';
export { ControlClient, connectControl, findControl } from './nbd/control-client.js';
export type { ControlHello } from './nbd/control-protocol.js';
export { NbdClient, type NbdClientOptions, type NbdTarget } from './nbd/client.js';

export type { FileHandle, FileStat, FileSystem, OpenMode } from './io/file-system.js';
export { NodeFileSystem, nodeFileSystem } from './io/node-file-system.js';
export { MemoryFileSystem } from './io/memory-file-system.js';
export { breakWriterLock, readLockFile, type LockHolder } from './io/writer-lock.js';

export { DEFAULT_BLOCK_SIZE, MAX_BLOCK_SIZE, MIN_BLOCK_SIZE, MAX_VIRTUAL_SIZE } from './format/limits.js';

// VM directories (lib/vm): inspection, quiesce hooks, capture, VM-level snapshots.
export { inspectVm, locateVm, type VmLocation } from './vm/vm-inventory.js';
export type {
  ChainDiskSummary,
  InspectOptions,
  ProblemCode,
  ProblemSeverity,
  SkipKind,
  SkippedFile,
  VmDisk,
  VmdkExtentInfo,
  VmdkLink,
  VmFile,
  VmFileKind,
  VmInventory,
  VmProblem,
  VmSnapshotDisk,
  VmSnapshotNode,
} from './vm/vm-inventory-types.js';
export { captureVm, newCaptureId } from './vm/capture-vm.js';
export { deleteCaptureSnapshots, listCaptureSnapshots, type CaptureSnapshotRef } from './vm/capture-snapshots.js';
export type { Capture, CapturedChainDisk, CapturedFile, CapturedItem, CaptureOptions, ConsistencyLevel, QuiesceReport, ReleaseReport } from './vm/capture-types.js';
export { hasHooks, planHooks, DEFAULT_HOOK_TIMEOUT_MS, type HookPlan, type HookSpec, type QuiesceMode } from './vm/hooks/hook-plan.js';
export { QuiesceSession, withQuiesce, type HookEnvironment, type HookLogEntry } from './vm/hooks/quiesce-session.js';
export type { HookOutcome, HookPhase } from './vm/hooks/run-hook.js';
export { createVmSnapshot, deleteVmSnapshot, findVmSnapshot, revertVmSnapshot, type CreateVmSnapshotOptions, type VmSnapshotResult } from './vm/vm-snapshots.js';
export type { VmSnapshotOptions } from './vm/vm-snapshot-context.js';
export { parseVmx, type VmxConfig, type VmxDisk } from './vm/vmx-file.js';
export { encodeVmsd, parseVmsd, type Vmsd, type VmsdSnapshot } from './vm/vmsd-file.js';
export { parseVmdkDescriptor, type VmdkDescriptor, type VmdkExtent } from './vm/vmdk-descriptor.js';
export { decodeSparseExtentHeader, type SparseExtentHeader } from './vm/sparse-extent-header.js';
export { backupVm, captureDescription, type VmBackupOptions, type VmBackupResult } from './vm/vm-backup.js';
export { restoreVm, type VmRestoreOptions, type VmRestoreResult } from './vm/vm-restore.js';
export type { VmConsistency, VmDiskRecord, VmHookRecord, VmRecord } from './format/vm-record.js';

// Backup repository (lib/repo)
export { Repository } from './repo/repository.js';
export { defaultCacheDir } from './io/cache-dir.js';
export { matchesFilter } from './repo/repository.js';
export type { BackupFilter, BackupInfo, InitRepositoryOptions, OpenRepositoryOptions } from './repo/repository.js';
export { backup, isImageName } from './repo/backup.js';
export type { BackupOptions, BackupProgress, BackupResult, BackupSummary, BackupWarning } from './repo/backup.js';
export { restore } from './repo/restore.js';
export type { RestoreOptions, RestoreProgress, RestoreResult, RestoreSummary } from './repo/restore.js';
export { checkRepository, inSubset } from './repo/check.js';
export type { CheckOptions as RepoCheckOptions, CheckProblem as RepoCheckProblem, CheckReport as RepoCheckReport, ProblemKind as RepoProblemKind } from './repo/check.js';
export { applyRetention } from './repo/retention.js';
export type { CalendarSpan, RetentionDecision, RetentionItem, RetentionPolicy } from './repo/retention.js';
export { forget } from './repo/forget.js';
export type { ForgetOptions, ForgetResult } from './repo/forget.js';
export { prune } from './repo/prune.js';
export type { PruneOptions, PruneProgress, PruneResult } from './repo/prune.js';
export { repositoryStats } from './repo/stats.js';
export type { RepoStats } from './repo/stats.js';
export { diffBackups } from './repo/diff.js';
export type { DiffItem, DiffResult } from './repo/diff.js';
export { breakRepoLocks, listLocks } from './repo/repo-lock.js';
export type { ListedLock } from './repo/repo-lock.js';
export type { Manifest, Entry, ChainEntry, ChainPoint, Content } from './format/manifest.js';
export type { RepoConfig } from './format/repo-config.js';
export type { LockKind } from './format/repo-lock.js';
