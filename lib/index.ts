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
