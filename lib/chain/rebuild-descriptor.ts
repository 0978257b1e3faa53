/**
 * Rebuilding a lost or unreadable descriptor from the headers of the delta files.
 *
 * Every delta header repeats what the descriptor needs: disk id, layer id, parent,
 * block and virtual size, the base reference, the sealed flag and the snapshot tag.
 * The rebuild reads the headers of the files named like the disk's deltas, keeps
 * those of the disk most of them belong to, and reassembles the tree. It refuses
 * (CHAIN_CORRUPT) rather than guesses when the headers do not form one tree. Where
 * a choice remains it takes the safe one and says so: of two files claiming one
 * layer (an interrupted compaction), the older, complete one; of several unsealed
 * leaves (an interrupted revert), the newest as the active layer. With no unsealed
 * leaf (the active delta was lost with the descriptor) a new, empty active layer
 * goes on the newest leaf, which stays sealed with its snapshot: a committed
 * snapshot never becomes writable (the caller creates the file, `newLayer`).
 */
import { randomUUID } from 'node:crypto';
import { DeltaDiskError } from '../errors.js';
import type { DeltaHeader } from '../format/delta-header.js';
import type { Descriptor, LayerEntry, SnapshotEntry } from '../format/descriptor.js';
import type { FileSystem } from '../io/file-system.js';
import type { DiskPaths } from './descriptor-file.js';
import { readHeaders } from './leftover-files.js';
import path from 'node:path';

export interface RebuildResult {
  readonly descriptor: Descriptor;
  /** An empty active layer the descriptor names, whose file the caller must create first. */
  readonly newLayer?: { readonly entry: LayerEntry; readonly parentFile: string; readonly header: DeltaHeader } | undefined;
  /** Choices made and files left out, for the report. */
  readonly notes: readonly string[];
}

/** The newer of a delta's intact header slots (readHeaders: regular files only, never followed). */
async function readHeader(fs: FileSystem, p: string): Promise<DeltaHeader | undefined> {
  const found = await readHeaders(fs, p);
  return found?.headers.reduce<DeltaHeader | undefined>((best, h) => (best === undefined || h.generation > best.generation ? h : best), undefined);
}

/** @throws NOT_FOUND when there is no delta to rebuild from, CHAIN_CORRUPT when they do not form a tree. */
export async function rebuildDescriptor(fs: FileSystem, paths: DiskPaths): Promise<RebuildResult> {
  const notes: string[] = [];
  const names = await fs.readdir(paths.dir);
  const found: { file: string; n: number; h: DeltaHeader }[] = [];
  let highest = 0;
  for (const name of names) {
    const n = paths.layerNumber(name);
    if (n === undefined) continue;
    highest = Math.max(highest, n);
    const h = await readHeader(fs, path.join(paths.dir, name));
    if (h === undefined) notes.push(`${name}: not a regular file with an intact header, left out`);
    else found.push({ file: name, n, h });
  }
  if (found.length === 0) {
    throw new DeltaDiskError('NOT_FOUND', `no delta files of ${paths.descriptor} to rebuild it from`, { path: paths.descriptor });
  }
  // The disk most files belong to.
  const byDisk = new Map<string, number>();
  for (const f of found) byDisk.set(f.h.diskId, (byDisk.get(f.h.diskId) ?? 0) + 1);
  const diskId = [...byDisk.entries()].sort((a, b) => b[1] - a[1])[0]![0];
  for (const f of found) if (f.h.diskId !== diskId) notes.push(`${f.file}: belongs to another disk (${f.h.diskId}), left out`);
  const mine = found.filter((f) => f.h.diskId === diskId).sort((a, b) => a.n - b.n);

  // One file per layer: the oldest (a compaction's new file may be incomplete).
  const byLayer = new Map<string, (typeof mine)[number]>();
  for (const f of mine) {
    if (byLayer.has(f.h.layerId)) notes.push(`${f.file}: a second file of layer ${f.h.layerId} (interrupted compaction?), left out`);
    else byLayer.set(f.h.layerId, f);
  }
  const first = mine[0]!.h;
  for (const f of byLayer.values()) {
    if (f.h.blockSize !== first.blockSize || f.h.virtualSize !== first.virtualSize) {
      throw new DeltaDiskError('CHAIN_CORRUPT', `${f.file} disagrees with the other deltas on block or virtual size; not rebuilding`, {
        path: path.join(paths.dir, f.file),
      });
    }
  }
  const layers: LayerEntry[] = [...byLayer.values()].map((f) => ({ id: f.h.layerId, file: f.file, parent: f.h.parentId, created: f.h.created }));
  for (const l of layers) {
    if (l.parent !== null && !byLayer.has(l.parent)) {
      throw new DeltaDiskError('CHAIN_CORRUPT', `${l.file} names parent ${l.parent}, which no delta file holds; not rebuilding`, {
        path: path.join(paths.dir, l.file),
      });
    }
  }
  const hasChildren = new Set(layers.map((l) => l.parent).filter((p): p is string => p !== null));
  const unsealedLeaves = [...byLayer.values()].filter((f) => !f.h.sealed && !hasChildren.has(f.h.layerId));
  let active: string;
  let newLayer: RebuildResult['newLayer'];
  let nextLayer = mine[mine.length - 1]!.n + 1;
  if (unsealedLeaves.length === 0) {
    // Every leaf is sealed: a new active layer on the newest one.
    const leaves = [...byLayer.values()].filter((f) => !hasChildren.has(f.h.layerId)).sort((a, b) => b.n - a.n);
    if (leaves.length === 0) throw new DeltaDiskError('CHAIN_CORRUPT', 'the deltas form a cycle; not rebuilding');
    const leaf = leaves[0]!;
    // Numbered past every file named like a delta, not only the intact ones: a file
    // whose creation was cut (this very repair interrupted, say) holds the next
    // number, and creating over it would fail every repair after.
    nextLayer = Math.max(nextLayer, highest + 1);
    const entry: LayerEntry = { id: randomUUID(), file: paths.layerFile(nextLayer), parent: leaf.h.layerId, created: new Date().toISOString() };
    newLayer = { entry, parentFile: leaf.file, header: leaf.h };
    active = entry.id;
    notes.push(`no unsealed leaf (the active delta is lost): a new, empty active layer ${entry.file} on ${leaf.file}`);
  } else {
    unsealedLeaves.sort((a, b) => b.n - a.n);
    active = unsealedLeaves[0]!.h.layerId;
    for (const extra of unsealedLeaves.slice(1)) notes.push(`${extra.file}: another unsealed leaf (interrupted revert?), left out`);
  }
  const dropped = new Set(unsealedLeaves.slice(1).map((f) => f.h.layerId));
  const kept = [...layers.filter((l) => !dropped.has(l.id)), ...(newLayer === undefined ? [] : [newLayer.entry])];
  const snapshots: SnapshotEntry[] = [];
  const snapshotNames = new Set<string>();
  for (const f of byLayer.values()) {
    const t = f.h.snapshot;
    if (t === null || dropped.has(f.h.layerId) || f.h.layerId === active) continue;
    if (snapshotNames.has(t.name)) {
      notes.push(`${f.file}: a second snapshot named ${t.name}, kept without its name`);
      continue;
    }
    snapshotNames.add(t.name);
    snapshots.push({ id: t.id, name: t.name, description: '', created: t.created, layer: f.h.layerId });
  }
  const descriptor: Descriptor = {
    diskId,
    generation: 1,
    virtualSize: first.virtualSize,
    blockSize: first.blockSize,
    dedup: true,
    base: first.base,
    nextLayer: nextLayer + (newLayer === undefined ? 0 : 1),
    active,
    layers: kept,
    snapshots,
  };
  return { descriptor, notes, newLayer };
}
