/**
 * Merging away a layer that carries no snapshot and has exactly one child.
 *
 * Two directions (QEMU's block-stream and block-commit):
 *  - stream: the parent's blocks that the child lacks are copied up into the child,
 *    which then sits on the parent's parent. Always allowed.
 *  - commit: the child's blocks are copied down into the parent, which takes the
 *    child's place (its snapshot, its children, or the active role). Allowed because
 *    the parent is unnamed and has no other child: nothing reads it as a point in time.
 * The cheaper direction (fewer blocks of data to copy) is chosen.
 *
 * Crash safety (DESIGN rule 6): a state record is written before any layer is
 * touched. The copy only appends to the survivor, duplicating what reads through
 * the chain already return, so the disk reads the same at every instant; the
 * descriptor switch is the commit point; header fix-ups and the unlink of the
 * removed file come after and are idempotent. Resuming re-runs whatever the
 * descriptor shows is not done yet, after checking that the layers are still the
 * ones the record names (STATE_MISMATCH otherwise). Data of the removed layer that
 * deduplicated blocks elsewhere still refer to is carried over as BLOB records.
 */
import { DeltaDiskError, fromSystemError } from '../errors.js';
import type { Descriptor } from '../format/descriptor.js';
import { MAX_RECORD_PAYLOAD } from '../format/limits.js';
import type { MergeState } from '../format/op-state.js';
import { RecordKind } from '../format/record.js';
import type { FileSystem } from '../io/file-system.js';
import type { BaseImage } from './base-image.js';
import { ChainView } from './chain-view.js';
import { removeOpState, writeOpState, type DiskPaths } from './descriptor-file.js';
import { MAX_APPEND_ROWS, type LayerFile, type Run } from './layer-file.js';
import type { LayerSet } from './layer-set.js';
import { Tree } from './tree.js';
import path from 'node:path';
import { readInto } from '../io/positional.js';

/** Write the progress mark after copying this many bytes. */
const PROGRESS_EVERY_BYTES = 256 * 1024 * 1024;

export interface MergeContext {
  readonly fs: FileSystem;
  readonly paths: DiskPaths;
  readonly layers: LayerSet;
  readonly base: BaseImage;
  descriptor(): Descriptor;
  /** Durably replaces the descriptor (the commit point) and adopts it in memory. */
  commitDescriptor(next: Descriptor): Promise<void>;
}

export interface MergeResult {
  readonly removed: string;
  readonly survivor: string;
  readonly direction: 'stream' | 'commit';
  readonly copiedBlocks: number;
  readonly copiedBytes: number;
}

function dataBlocks(layer: LayerFile, skip?: LayerFile): number {
  let n = 0;
  layer.map.forEach((block, kind) => {
    if (kind === RecordKind.DATA && (skip === undefined || !skip.map.has(block))) n++;
  });
  return n;
}

/**
 * Chooses the direction for merging `removedParent` (unnamed, one child) with its child.
 * @returns the state record to run.
 */
export async function planMerge(ctx: MergeContext, parentId: string, force?: 'stream' | 'commit'): Promise<MergeState> {
  const d = ctx.descriptor();
  const tree = new Tree(d);
  const children = tree.children(parentId);
  if (parentId === d.active || tree.snapshotOn(parentId) !== undefined || children.length !== 1) {
    throw new Error(`internal: layer ${parentId} is not mergeable`);
  }
  const child = children[0]!;
  const parent = await ctx.layers.get(d, parentId);
  const childLayer = await ctx.layers.get(d, child.id);
  const streamCost = dataBlocks(parent, childLayer);
  const commitCost = dataBlocks(childLayer);
  const direction = force ?? (commitCost < streamCost ? 'commit' : 'stream');
  const removedId = direction === 'stream' ? parentId : child.id;
  const survivorId = direction === 'stream' ? child.id : parentId;
  const removed = direction === 'stream' ? parent : childLayer;
  // Index the removed layer's tail now, so its header generation is final and can
  // identify it when resuming.
  if (removed.header.logEnd !== removed.logEnd || removed.header.sealed !== (removed.id !== d.active)) {
    await removed.updateHeader({});
  }
  return {
    op: 'merge',
    diskId: d.diskId,
    direction,
    removed: { id: removedId, file: tree.layer(removedId).file, generation: removed.header.generation },
    survivor: { id: survivorId, file: tree.layer(survivorId).file },
    progress: 0,
    started: new Date().toISOString(),
  };
}

/** Layers whose header parent may be stale while `state` is unfinished. */
export function layersWithPendingParent(d: Descriptor, state: MergeState): string[] {
  const tree = new Tree(d);
  const out = [state.survivor.id];
  for (const id of [state.survivor.id, state.removed.id]) {
    if (tree.has(id)) out.push(...tree.children(id).map((c) => c.id));
  }
  return out;
}

function mismatch(message: string): never {
  throw new DeltaDiskError('STATE_MISMATCH', `unfinished merge: ${message}; the files no longer match its state record`);
}

/** Runs (or resumes) a merge to the end. */
export async function runMerge(ctx: MergeContext, initial: MergeState): Promise<MergeResult> {
  let state = initial;
  let copied = { blocks: 0, bytes: 0 };
  const d = ctx.descriptor();
  if (state.diskId !== d.diskId) mismatch('it belongs to another disk');
  const tree = new Tree(d);
  if (tree.has(state.removed.id)) {
    // Copy phase: the descriptor still has the removed layer.
    const removedEntry = tree.layer(state.removed.id);
    if (!tree.has(state.survivor.id)) mismatch('the surviving layer is not in the descriptor');
    const survivorEntry = tree.layer(state.survivor.id);
    if (removedEntry.file !== state.removed.file || survivorEntry.file !== state.survivor.file) mismatch('layer files differ');
    const parentId = state.direction === 'stream' ? state.removed.id : state.survivor.id;
    const childId = state.direction === 'stream' ? state.survivor.id : state.removed.id;
    const kids = tree.children(parentId);
    if (kids.length !== 1 || kids[0]!.id !== childId || tree.snapshotOn(parentId) !== undefined || parentId === d.active) {
      mismatch('the layers are no longer a mergeable parent and child');
    }
    const removed = await ctx.layers.get(d, state.removed.id);
    if (removed.header.generation !== state.removed.generation) mismatch(`layer ${state.removed.id} has changed since`);
    // Blocks below the mark are skipped as copied: a mark past the disk's last block
    // would skip them all and drop the removed layer's data.
    if (state.progress > Math.ceil(d.virtualSize / d.blockSize)) mismatch(`its progress mark ${state.progress} lies past the last block`);
    const survivor = await ctx.layers.get(d, state.survivor.id);
    await writeOpState(ctx.fs, ctx.paths.opState, state);
    copied = await copyBlocks(ctx, tree, state, removed, survivor, (progress) => {
      state = { ...state, progress };
      return writeOpState(ctx.fs, ctx.paths.opState, state);
    });
    await ctx.commitDescriptor(switched(d, state));
  } else if (!tree.has(state.survivor.id)) {
    mismatch('neither layer is in the descriptor');
  }
  await fixHeaders(ctx, state);
  await ctx.layers.forget(state.removed.id);
  const removedPath = path.join(ctx.paths.dir, state.removed.file);
  try {
    await ctx.fs.unlink(removedPath);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw fromSystemError(err, removedPath, 'removing merged layer failed');
  }
  await removeOpState(ctx.fs, ctx.paths.opState);
  ctx.layers.clearWaivers();
  return {
    removed: state.removed.id,
    survivor: state.survivor.id,
    direction: state.direction,
    copiedBlocks: copied.blocks,
    copiedBytes: copied.bytes,
  };
}

/** The descriptor after the switch: the removed layer gone, the survivor in its place. */
function switched(d: Descriptor, s: MergeState): Descriptor {
  const removed = d.layers.find((l) => l.id === s.removed.id)!;
  if (s.direction === 'stream') {
    return {
      ...d,
      generation: d.generation + 1,
      layers: d.layers.filter((l) => l.id !== removed.id).map((l) => (l.id === s.survivor.id ? { ...l, parent: removed.parent } : l)),
    };
  }
  return {
    ...d,
    generation: d.generation + 1,
    active: d.active === removed.id ? s.survivor.id : d.active,
    layers: d.layers.filter((l) => l.id !== removed.id).map((l) => (l.parent === removed.id ? { ...l, parent: s.survivor.id } : l)),
    snapshots: d.snapshots.map((snap) => (snap.layer === removed.id ? { ...snap, layer: s.survivor.id } : snap)),
  };
}

/** Makes the headers of the survivor and its children agree with the descriptor. */
async function fixHeaders(ctx: MergeContext, s: MergeState): Promise<void> {
  const d = ctx.descriptor();
  const tree = new Tree(d);
  const ids = [s.survivor.id, ...tree.children(s.survivor.id).map((c) => c.id)];
  for (const id of ids) await reconcileHeader(ctx.layers, d, id);
}

/** Rewrites layer `id`'s header where it disagrees with descriptor `d` (parent, sealed, snapshot). */
export async function reconcileHeader(layers: LayerSet, d: Descriptor, id: string): Promise<boolean> {
  const tree = new Tree(d);
  const entry = tree.layer(id);
  const layer = await layers.get(d, id);
  const parentFile = entry.parent === null ? null : tree.layer(entry.parent).file;
  const snap = tree.snapshotOn(id);
  const tag = snap === undefined ? null : { id: snap.id, name: snap.name, description: snap.description, created: snap.created };
  const h = layer.header;
  const sealed = id !== d.active;
  const sameTag =
    (h.snapshot === null && tag === null) ||
    (h.snapshot !== null && tag !== null && h.snapshot.id === tag.id && h.snapshot.name === tag.name && h.snapshot.description === tag.description);
  if (h.parentId === entry.parent && h.parentFile === parentFile && h.sealed === sealed && sameTag) return false;
  await layer.updateHeader({ parentId: entry.parent, parentFile, sealed, snapshot: tag });
  return true;
}

/**
 * Copies the blocks the merge moves into the survivor, then the content that
 * references elsewhere still need. Appends only; syncs before every progress mark.
 */
async function copyBlocks(
  ctx: MergeContext,
  tree: Tree,
  s: MergeState,
  removed: LayerFile,
  survivor: LayerFile,
  saveProgress: (progress: number) => Promise<void>,
): Promise<{ blocks: number; bytes: number }> {
  const d = ctx.descriptor();
  const bs = d.blockSize;
  // The view of the path up to the removed layer (its top) resolves references and
  // tells where each block's bytes and each hash live.
  const pathLayers = await ctx.layers.getAll(d, tree.path(s.removed.id).map((l) => l.id));
  const view = ChainView.build(ctx.base, pathLayers, d.virtualSize, bs, { indexHashes: true });
  const removedSlot = pathLayers.length;
  const index = view.hashes!;

  const blocks: number[] = [];
  removed.map.forEach((block) => {
    if (block < s.progress) return;
    if (s.direction === 'stream' && survivor.map.has(block)) return;
    blocks.push(block);
  });

  const maxRunBlocks = Math.max(1, Math.floor(MAX_RECORD_PAYLOAD / bs));
  let runs: Run[] = [];
  let rowsInBatch = 0;
  let copiedBlocks = 0;
  let copiedBytes = 0;
  let sinceProgress = 0;
  const survivorHashes = new Set<string>();
  const flushBatch = async (): Promise<void> => {
    if (runs.length === 0) return;
    await survivor.append(runs);
    runs = [];
    rowsInBatch = 0;
  };
  const pushRun = async (run: Run, rows: number): Promise<void> => {
    if (rowsInBatch + rows > MAX_APPEND_ROWS) await flushBatch();
    runs.push(run);
    rowsInBatch += rows;
  };

  // Group consecutive blocks of one kind into runs; read data of a run in one go.
  let i = 0;
  while (i < blocks.length) {
    const first = blocks[i]!;
    const row = removed.map.num(first);
    let kind = removed.map.tag(first);
    let hash: Uint8Array | undefined;
    if (kind === RecordKind.REF) {
      hash = removed.records.hash(row);
      const hit = index.find(hash);
      if (hit === undefined) throw new DeltaDiskError('CHAIN_CORRUPT', `block ${first} refers to content stored nowhere`, { block: first });
      if (hit.slot === removedSlot) kind = RecordKind.DATA; // its content leaves with the layer
    }
    if (kind === RecordKind.ZERO) {
      let n = 1;
      while (i + n < blocks.length && blocks[i + n] === first + n && removed.map.tag(first + n) === RecordKind.ZERO && n < MAX_APPEND_ROWS) n++;
      await pushRun({ kind: RecordKind.ZERO, block: first, count: n }, n);
      i += n;
      copiedBlocks += n;
      continue;
    }
    if (kind === RecordKind.REF) {
      await pushRun({ kind: RecordKind.REF, block: first, hashes: [Uint8Array.from(hash!)] }, 1);
      i += 1;
      copiedBlocks += 1;
      continue;
    }
    // DATA: gather consecutive DATA blocks whose bytes lie contiguous in the removed layer.
    const offsets: number[] = [view.merged.num(first)];
    const hashes: (Uint8Array | undefined)[] = [dataHash(removed, row, hash)];
    let n = 1;
    while (i + n < blocks.length && n < maxRunBlocks) {
      const b = blocks[i + n]!;
      if (b !== first + n || removed.map.tag(b) !== RecordKind.DATA) break;
      offsets.push(view.merged.num(b));
      hashes.push(dataHash(removed, removed.map.num(b), undefined));
      n++;
    }
    const data = await readOffsets(removed, offsets, bs);
    const knownHashes = hashes.every((h) => h !== undefined) ? (hashes as Uint8Array[]) : undefined;
    if (knownHashes) for (const h of knownHashes) survivorHashes.add(Buffer.from(h).toString('hex'));
    await pushRun({ kind: RecordKind.DATA, block: first, data, hashes: knownHashes }, n);
    i += n;
    copiedBlocks += n;
    copiedBytes += n * bs;
    sinceProgress += n * bs;
    if (sinceProgress >= PROGRESS_EVERY_BYTES && i < blocks.length) {
      await flushBatch();
      await survivor.sync();
      await saveProgress(blocks[i]!);
      sinceProgress = 0;
    }
  }
  await flushBatch();

  // Content that deduplicated blocks further up still point at must not leave with the layer.
  const referrers = s.direction === 'stream' ? [tree.layer(s.survivor.id), ...tree.descendants(s.survivor.id)] : tree.descendants(s.removed.id);
  for (let r = 0; r < survivor.records.count; r++) {
    const k = survivor.records.kind(r);
    if ((k === RecordKind.DATA || k === RecordKind.BLOB) && survivor.records.hasHash(r)) survivorHashes.add(Buffer.from(survivor.records.hash(r)).toString('hex'));
  }
  const blobs: Buffer[] = [];
  const blobHashes: Uint8Array[] = [];
  for (const entry of referrers) {
    const layer = await ctx.layers.get(d, entry.id);
    for (let r = 0; r < layer.records.count; r++) {
      if (layer.records.kind(r) !== RecordKind.REF) continue;
      const h = layer.records.hash(r);
      const key = Buffer.from(h).toString('hex');
      if (survivorHashes.has(key)) continue;
      const hit = index.find(h);
      if (hit === undefined || hit.slot !== removedSlot) continue;
      survivorHashes.add(key);
      blobs.push(await removed.readRow(hit.row));
      blobHashes.push(Uint8Array.from(h));
      if (blobs.length >= maxRunBlocks) {
        await survivor.append([{ kind: RecordKind.BLOB, data: blobs.splice(0), hashes: blobHashes.splice(0) }]);
      }
    }
  }
  if (blobs.length > 0) await survivor.append([{ kind: RecordKind.BLOB, data: blobs, hashes: blobHashes }]);
  await survivor.sync();
  return { blocks: copiedBlocks, bytes: copiedBytes };
}

function dataHash(layer: LayerFile, row: number, known: Uint8Array | undefined): Uint8Array | undefined {
  if (known !== undefined) return Uint8Array.from(known);
  return layer.records.hasHash(row) ? Uint8Array.from(layer.records.hash(row)) : undefined;
}

/** Reads whole blocks at the given offsets, coalescing contiguous ones into one read. */
async function readOffsets(layer: LayerFile, offsets: readonly number[], bs: number): Promise<Buffer[]> {
  const out: Buffer[] = [];
  let i = 0;
  while (i < offsets.length) {
    let n = 1;
    while (i + n < offsets.length && offsets[i + n] === offsets[i]! + n * bs) n++;
    const buf = Buffer.allocUnsafe(n * bs);
    await readInto(layer.handle, buf, offsets[i]!);
    for (let k = 0; k < n; k++) out.push(buf.subarray(k * bs, (k + 1) * bs));
    i += n;
  }
  return out;
}
