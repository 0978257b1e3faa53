/**
 * deltadisk/testing: property-based testing of snapshot logic against a real disk.
 *
 * `diskCommands` gives fast-check arbitraries of every disk operation; each command
 * applies itself to a real `Disk` and to the `DiskModel`, and reads compare the two.
 * Requires fast-check 4 (a peer dependency).
 */
export { DiskModel } from './disk-model.js';
export {
  assertSameBytes,
  BookmarkCommand,
  ChangedBlocksCommand,
  CheckCommand,
  CompactCommand,
  ConsolidateCommand,
  ConsolidateDepthCommand,
  DedupCommand,
  DeleteSnapshotCommand,
  diskCommands,
  FlushCommand,
  ReadCommand,
  ReadSnapshotCommand,
  ReopenCommand,
  RevertCommand,
  SnapshotCommand,
  WriteCommand,
  ZeroCommand,
  type DiskCommand,
  type DiskCommandOptions,
  type RealDisk,
} from './disk-commands.js';
