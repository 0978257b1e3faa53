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
export { DeltaDiskError, ERROR_CODES, isDeltaDiskError, type ErrorCode } from './errors.js';

export { Disk } from './chain/disk.js';
export type {
  ConsolidateResult,
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

export type { FileHandle, FileStat, FileSystem, OpenMode } from './io/file-system.js';
export { NodeFileSystem, nodeFileSystem } from './io/node-file-system.js';
export { MemoryFileSystem } from './io/memory-file-system.js';
export { breakWriterLock, readLockFile, type LockHolder } from './io/writer-lock.js';

export { DEFAULT_BLOCK_SIZE, MAX_BLOCK_SIZE, MIN_BLOCK_SIZE, MAX_VIRTUAL_SIZE } from './format/limits.js';

// Backup repository (lib/repo)
export { Repository } from './repo/repository.js';
export type { BackupInfo, InitRepositoryOptions, OpenRepositoryOptions } from './repo/repository.js';
export { backup, isImageName } from './repo/backup.js';
export type { BackupOptions, BackupProgress, BackupResult, BackupSummary, BackupWarning } from './repo/backup.js';
export { restore } from './repo/restore.js';
export type { RestoreOptions, RestoreProgress, RestoreResult, RestoreSummary } from './repo/restore.js';
export { checkRepository, inSubset } from './repo/check.js';
export type { CheckOptions, CheckProblem, CheckReport, ProblemKind } from './repo/check.js';
export { applyRetention } from './repo/retention.js';
export type { RetentionDecision, RetentionItem, RetentionPolicy } from './repo/retention.js';
export { forget } from './repo/forget.js';
export type { ForgetOptions, ForgetResult } from './repo/forget.js';
export { prune } from './repo/prune.js';
export type { PruneOptions, PruneResult } from './repo/prune.js';
export { repositoryStats } from './repo/stats.js';
export type { RepoStats } from './repo/stats.js';
export { diffBackups } from './repo/diff.js';
export type { DiffItem, DiffResult } from './repo/diff.js';
export { breakRepoLocks, listLocks } from './repo/repo-lock.js';
export type { ListedLock } from './repo/repo-lock.js';
export type { Manifest, Entry, ChainEntry, ChainPoint, Content } from './format/manifest.js';
export type { RepoConfig } from './format/repo-config.js';
export type { LockKind } from './format/repo-lock.js';
