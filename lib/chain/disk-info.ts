/**
 * `Disk.info()`: sizes, depth and space, per layer and in total.
 */
import type { Descriptor } from '../format/descriptor.js';
import type { DiskInfo, LayerInfo } from './disk-types.js';
import type { LayerFile } from './layer-file.js';
import { layerSpace, referencedHashes } from './space-accounting.js';
import type { Tree } from './tree.js';

/** @param all the open layers, in the order of `d.layers`. */
export async function describeDisk(path: string, d: Descriptor, tree: Tree, all: readonly LayerFile[]): Promise<DiskInfo> {
  const onPath = new Set(tree.path(d.active).map((l) => l.id));
  const referenced = referencedHashes(all);
  const sizes = await Promise.all(all.map(async (l) => (await l.handle.stat()).size));
  const layers: LayerInfo[] = [];
  let allocated = 0;
  let stored = 0;
  let saved = 0;
  let logical = 0;
  d.layers.forEach((entry, i) => {
    const space = layerSpace(all[i]!, referenced);
    allocated += sizes[i]!;
    stored += space.storedBytes;
    saved += space.dedupSavedBytes;
    logical += space.logicalBytes;
    layers.push({
      id: entry.id,
      file: entry.file,
      parent: entry.parent,
      snapshot: tree.snapshotOn(entry.id)?.name ?? null,
      active: entry.id === d.active,
      current: onPath.has(entry.id),
      fileBytes: sizes[i]!,
      ...space,
    });
  });
  return {
    path,
    virtualSize: d.virtualSize,
    blockSize: d.blockSize,
    dedup: d.dedup,
    base: d.base === null ? null : { file: d.base.file, size: d.base.size },
    depth: onPath.size,
    layerCount: d.layers.length,
    snapshotCount: d.snapshots.length,
    layers,
    logicalBytes: logical,
    allocatedBytes: allocated,
    storedBytes: stored,
    dedupSavedBytes: saved,
  };
}
