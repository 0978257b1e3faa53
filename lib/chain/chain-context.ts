/**
 * What the multi-step operations on a disk (merge, compaction, check repair) get
 * from the open Disk: its files, its open layers, and the one way to change its
 * shape — committing a new descriptor.
 */
import type { Descriptor } from '../format/descriptor.js';
import type { FileSystem } from '../io/file-system.js';
import type { BaseImage } from './base-image.js';
import type { DiskPaths } from './descriptor-file.js';
import type { LayerSet } from './layer-set.js';

export interface ChainContext {
  readonly fs: FileSystem;
  readonly paths: DiskPaths;
  readonly layers: LayerSet;
  readonly base: BaseImage;
  descriptor(): Descriptor;
  /** Durably replaces the descriptor (the commit point) and adopts it in memory. */
  commitDescriptor(next: Descriptor): Promise<void>;
}
