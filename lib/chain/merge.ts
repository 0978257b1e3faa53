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
import { DeltaDiskError, fromSystemError, isDeltaDiskError } from '../errors.js';
import { isBookmark, type Descriptor, type LayerEntry } from '../format/descriptor.js';
import { MAX_RECORD_PAYLOAD } from '../format/limits.js';
import type { MergeState } from '../format/op-state.js';
import { RecordKind } from '../format/record.js';
import type { ChainContext } from './chain-context.js';
import { ChainView, layerHasRefs } from './chain-view.js';
import { removeOpState, writeOpState } from './descriptor-file.js';
import { MAX_APPEND_ROWS, type LayerFile, type Run } from './layer-file.js';
import { readHeaders } from './leftover-files.js';
import { readRows } from './read-rows.js';
import type { LayerSet } from './layer-set.js';
import { Tree } from './tree.js';
import path from 'node:path';

/** Write the progress mark after copying this many bytes. */
const PROGRESS_EVERY_BYTES = 256 * 1024 * 1024;
/**
 * Data read ahead and appended at once (memory of a merge, whatever the layer's
 * size). With its record headers and padding an append stays within a 32 MiB
 * staging buffer (LayerFile.append), not the next size up.
 */
const BATCH_BYTES = 31 * 1024 * 1024;

/** A run of data blocks to copy, read when its batch is complete. */
interface DataToRead {
  readonly block: number;
  readonly rows: readonly number[];
  readonly hashes: Uint8Array[] | undefined;
  readonly crcs: number[];
}

export type MergeContext = ChainContext;

export interface MergeResult {
  readonly removed: string;
  readonly survivors: readonly string[];
  readonly direction: 'stream' | 'commit';
  readonly copiedBlocks: number;
  readonly copiedBytes: number;
}

function dataBlocks(layer: LayerFile, skip: LayerFile): number {
  let n = 0;
  layer.map.forEach((block, kind) => {
    if (kind === RecordKind.DATA && !skip.map.has(block)) n++;
  });
  return n;
}

/**
 * Whether committing `child` into `layer` copies fewer data blocks than streaming
 * `layer` into `child`. Settled from the counts alone when the child is small (a
 * backup's older anchor: a large layer under a small one, where walking the large
 * layer's map was most of planning the merge): at most `child.map.size` of the
 * layer's data blocks are shadowed.
 */
function commitIsCheaper(layer: LayerFile, child: LayerFile): boolean {
  const commitCost = child.dataBlocks;
  if (layer.dataBlocks - child.map.size > commitCost) return true;
  return commitCost < dataBlocks(layer, child);
}

/**
 * Plans merging away layer `id`, which carries no snapshot and is not active. With
 * one child, the direction copying fewer blocks of data is chosen (or `force`);
 * with several children (a layer shared by branches), it is streamed into each.
 * @returns the state record to run.
 */
export async function planMerge(ctx: MergeContext, id: string, force?: 'stream' | 'commit'): Promise<MergeState> {
  const d = ctx.descriptor();
  const tree = new Tree(d);
  const children = tree.children(id);
  if (id === d.active || tree.snapshotOn(id) !== undefined || children.length === 0) {
    throw new Error(`internal: layer ${id} cannot be merged away`);
  }
  const layer = await ctx.layers.get(d, id);
  let direction: 'stream' | 'commit' = 'stream';
  if (children.length === 1) {
    const child = await ctx.layers.get(d, children[0]!.id);
    direction = force ?? (commitIsCheaper(layer, child) ? 'commit' : 'stream');
  } else if (force === 'commit') {
    throw new Error(`internal: layer ${id} has ${children.length} children; only streaming can remove it`);
  }
  const removedId = direction === 'stream' ? id : children[0]!.id;
  const removed = await ctx.layers.get(d, removedId);
  // Index the removed layer's tail now, so its header generation is final and can
  // identify it when resuming.
  if (removed.header.logEnd !== removed.logEnd || removed.header.sealed !== (removed.id !== d.active)) {
    await removed.updateHeader({});
  }
  const survivors = direction === 'stream' ? children.map((c) => ({ id: c.id, file: c.file })) : [{ id, file: tree.layer(id).file }];
  return {
    op: 'merge',
    diskId: d.diskId,
    direction,
    removed: { id: removedId, file: tree.layer(removedId).file, generation: removed.header.generation },
    survivors,
    progress: 0,
    started: new Date().toISOString(),
  };
}

/** Layers whose header parent may be stale while `state` is unfinished. */
export function layersWithPendingParent(d: Descriptor, state: MergeState): string[] {
  const tree = new Tree(d);
  const out = state.survivors.map((s) => s.id);
  for (const id of [...out, state.removed.id]) {
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
  const copied = { blocks: 0, bytes: 0 };
  const d = ctx.descriptor();
  if (state.diskId !== d.diskId) mismatch('it belongs to another disk');
  const tree = new Tree(d);
  if (tree.has(state.removed.id)) {
    // Copy phase: the descriptor still has the removed layer.
    const removedEntry = tree.layer(state.removed.id);
    if (removedEntry.file !== state.removed.file) mismatch('the removed layer\'s file differs');
    for (const s of state.survivors) {
      if (!tree.has(s.id) || tree.layer(s.id).file !== s.file) mismatch(`layer ${s.id} is not in the descriptor as recorded`);
    }
    if (state.direction === 'stream') {
      const kids = tree.children(state.removed.id).map((c) => c.id).sort();
      const want = state.survivors.map((s) => s.id).sort();
      if (kids.join() !== want.join()) mismatch('the removed layer\'s children differ from the recorded ones');
      if (tree.snapshotOn(state.removed.id) !== undefined || state.removed.id === d.active) mismatch('the removed layer carries a snapshot or is active');
    } else {
      const parent = state.survivors[0]!.id;
      const kids = tree.children(parent);
      if (kids.length !== 1 || kids[0]!.id !== state.removed.id || tree.snapshotOn(parent) !== undefined || parent === d.active) {
        mismatch('the layers are no longer a mergeable parent and child');
      }
    }
    const removed = await ctx.layers.get(d, state.removed.id);
    if (removed.header.generation !== state.removed.generation) mismatch(`layer ${state.removed.id} has changed since`);
    // Blocks below the mark are skipped as copied: a mark past the disk's last block
    // would skip them all and drop the removed layer's data.
    if (state.progress > Math.ceil(d.virtualSize / d.blockSize)) mismatch(`its progress mark ${state.progress} lies past the last block`);
    await writeOpState(ctx.fs, ctx.paths.opState, state);
    try {
      state = await copyPhase(ctx, tree, state, removed, copied);
    } catch (err) {
      if (isDeltaDiskError(err, 'CHECKSUM_MISMATCH')) await abandon(ctx, state);
      throw err;
    }
    await ctx.commitDescriptor(switched(d, state));
  } else {
    // After the switch the record alone says which file goes: it must be one the
    // descriptor no longer names, and the survivors the layers and files the
    // descriptor has. A record saying otherwise (damaged, or crafted) would have us
    // delete a live layer.
    if (!state.survivors.every((s) => tree.has(s.id) && tree.layer(s.id).file === s.file)) {
      mismatch('the surviving layers are not in the descriptor');
    }
    if (d.layers.some((l) => l.file === state.removed.file)) mismatch(`${state.removed.file} is still a layer of the disk`);
  }
  // Only the removed layer's own file is unlinked: one whose header names another
  // layer or disk means the record does not match the files. One that is gone, or
  // not a regular file with an intact header (the descriptor, say), is left alone:
  // the leftover sweep and `check` deal with what is ours for certain.
  const removedPath = path.join(ctx.paths.dir, state.removed.file);
  const found = await readHeaders(ctx.fs, removedPath);
  if (found !== undefined && found.headers.some((h) => h.diskId !== d.diskId || h.layerId !== state.removed.id)) {
    mismatch(`${state.removed.file} holds another layer than the one removed`);
  }
  await fixHeaders(ctx, state);
  await ctx.layers.forget(state.removed.id);
  if (found !== undefined && found.headers.length > 0) {
    try {
      await ctx.fs.unlink(removedPath);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw fromSystemError(err, removedPath, 'removing merged layer failed');
    }
  }
  await removeOpState(ctx.fs, ctx.paths.opState);
  ctx.layers.clearWaivers();
  return {
    removed: state.removed.id,
    survivors: state.survivors.map((s) => s.id),
    direction: state.direction,
    copiedBlocks: copied.blocks,
    copiedBytes: copied.bytes,
  };
}

/**
 * The descriptor after the switch: the removed layer gone, the survivor in its place.
 * Bookmarks whose rows the merge moves are dropped with it (a bookmark is a prefix of
 * one layer's rows, which a merge does not keep in order): those on the removed
 * layer, and on a stream's survivors, whose new rows the parent's blocks now are.
 * Until the switch they read as before, so a crash midway loses none of them.
 */
function switched(d: Descriptor, s: MergeState): Descriptor {
  const removed = d.layers.find((l) => l.id === s.removed.id)!;
  const moved = new Set([removed.id, ...(s.direction === 'stream' ? s.survivors.map((v) => v.id) : [])]);
  const snapshots = d.snapshots.filter((snap) => !(isBookmark(snap) && moved.has(snap.layer)));
  if (s.direction === 'stream') {
    return {
      ...d,
      generation: d.generation + 1,
      layers: d.layers.filter((l) => l.id !== removed.id).map((l) => (l.parent === removed.id ? { ...l, parent: removed.parent } : l)),
      snapshots,
    };
  }
  const survivor = s.survivors[0]!.id;
  return {
    ...d,
    generation: d.generation + 1,
    active: d.active === removed.id ? survivor : d.active,
    layers: d.layers.filter((l) => l.id !== removed.id).map((l) => (l.parent === removed.id ? { ...l, parent: survivor } : l)),
    snapshots: snapshots.map((snap) => (snap.layer === removed.id ? { ...snap, layer: survivor } : snap)),
  };
}

/** Makes the headers of the survivors and their children agree with the descriptor. */
async function fixHeaders(ctx: MergeContext, s: MergeState): Promise<void> {
  const d = ctx.descriptor();
  const tree = new Tree(d);
  const ids = new Set<string>();
  for (const v of s.survivors) {
    ids.add(v.id);
    for (const c of tree.children(v.id)) ids.add(c.id);
  }
  for (const id of ids) await reconcileHeader(ctx.layers, d, id);
}

/** Rewrites layer `id`'s header where it disagrees with descriptor `d` (parent, sealed, snapshot). */
export async function reconcileHeader(layers: LayerSet, d: Descriptor, id: string): Promise<boolean> {
  const tree = new Tree(d);
  const entry = tree.layer(id);
  const layer = await layers.get(d, id);
  const parentFile = entry.parent === null ? null : tree.layer(entry.parent).file;
  const snap = tree.snapshotOn(id);
  const tag = snap === undefined ? null : { id: snap.id, name: snap.name, created: snap.created };
  const h = layer.header;
  const sealed = id !== d.active;
  const sameTag =
    (h.snapshot === null && tag === null) ||
    (h.snapshot !== null && tag !== null && h.snapshot.id === tag.id && h.snapshot.name === tag.name);
  if (h.parentId === entry.parent && h.parentFile === parentFile && h.sealed === sealed && sameTag) return false;
  await layer.updateHeader({ parentId: entry.parent, parentFile, sealed, snapshot: tag });
  return true;
}

/** The view of the path from the base up to layer `top`: resolves references, locates data. */
async function viewUpTo(ctx: MergeContext, tree: Tree, top: string): Promise<ChainView> {
  const d = ctx.descriptor();
  const layers = await ctx.layers.getAll(d, tree.path(top).map((l) => l.id));
  return ChainView.build(ctx.base, layers, d.virtualSize, d.blockSize, { indexHashes: true });
}

/**
 * The copy phase of a merge: appends to the survivors only, so the disk reads the
 * same throughout. Returns the state with its last progress mark.
 */
async function copyPhase(ctx: MergeContext, tree: Tree, initial: MergeState, removed: LayerFile, copied: { blocks: number; bytes: number }): Promise<MergeState> {
  let state = initial;
  const d = ctx.descriptor();
  const referrersOf = (id: string): LayerEntry[] => (state.direction === 'stream' ? [tree.layer(id), ...tree.descendants(id)] : tree.descendants(state.removed.id));
  // Without references in the removed layer or above it, every block the removed
  // layer holds is its own data and nothing above points into it: the view (a
  // merged map and hash index of the whole path, tens of milliseconds for a large
  // layer below) is not needed.
  let refs = layerHasRefs(removed);
  for (const s of state.survivors) {
    for (const e of referrersOf(s.id)) refs ||= layerHasRefs(await ctx.layers.get(d, e.id));
  }
  const view = refs ? await viewUpTo(ctx, tree, state.removed.id) : undefined;
  if (state.direction === 'stream') {
    for (const s of state.survivors) {
      const survivor = await ctx.layers.get(d, s.id);
      const n = await copyBlocks(ctx, view, removed, survivor, (b) => !survivor.map.has(b), async () => undefined);
      copied.blocks += n.blocks;
      copied.bytes += n.bytes;
      if (view !== undefined) await keepReferenced(ctx, view, removed, survivor, referrersOf(s.id));
      await survivor.sync();
    }
  } else {
    const survivor = await ctx.layers.get(d, state.survivors[0]!.id);
    const n = await copyBlocks(ctx, view, removed, survivor, (b) => b >= state.progress, async (next) => {
      await survivor.sync();
      state = { ...state, progress: next };
      await writeOpState(ctx.fs, ctx.paths.opState, state);
    });
    copied.blocks += n.blocks;
    copied.bytes += n.bytes;
    if (view !== undefined) await keepReferenced(ctx, view, removed, survivor, referrersOf(state.survivors[0]!.id));
    await survivor.sync();
  }
  return state;
}

/**
 * Gives up a merge whose copy met damaged data (copying it would launder the damage
 * under a fresh CRC). Before the descriptor switch nothing names the copies, and
 * those appended to a survivor hold what the disk already reads there, so removing
 * the state record leaves a valid disk: the layer stays, unmerged, and the damage
 * stays for `check` to report.
 */
async function abandon(ctx: MergeContext, state: MergeState): Promise<void> {
  const d = ctx.descriptor();
  for (const s of state.survivors) {
    const survivor = await ctx.layers.get(d, s.id).catch(() => undefined);
    if (survivor !== undefined && !survivor.broken) await survivor.sync().catch(() => undefined);
  }
  await removeOpState(ctx.fs, ctx.paths.opState).catch(() => undefined);
  ctx.layers.clearWaivers();
}

/**
 * Appends to `target` the blocks of `removed` (the top of `view`) that `want`
 * accepts, in block order, as runs; content that lives only in `removed` is copied
 * as data, references to content below are copied as references. Calls `mark`
 * with the next block index every PROGRESS_EVERY_BYTES of data (after which the
 * caller makes the copy durable and records progress). Without a view, `removed`
 * holds no references: each of its DATA blocks is served by its own row.
 */
async function copyBlocks(
  ctx: MergeContext,
  view: ChainView | undefined,
  removed: LayerFile,
  target: LayerFile,
  want: (block: number) => boolean,
  mark: (next: number) => Promise<void>,
): Promise<{ blocks: number; bytes: number }> {
  const bs = ctx.descriptor().blockSize;
  const blocks: number[] = [];
  removed.map.forEach((block) => {
    if (want(block)) blocks.push(block);
  });
  const maxRunBlocks = Math.max(1, Math.floor(MAX_RECORD_PAYLOAD / bs));
  // A batch of runs is appended with one write. Its data is read when the batch is
  // complete, all of it together (see readRows): bounded by BATCH_BYTES.
  let batch: (Run | DataToRead)[] = [];
  let rowsInBatch = 0;
  let bytesInBatch = 0;
  let copiedBlocks = 0;
  let copiedBytes = 0;
  let sinceMark = 0;
  const flushBatch = async (): Promise<void> => {
    if (batch.length === 0) return;
    const runs = batch;
    batch = [];
    rowsInBatch = 0;
    bytesInBatch = 0;
    const toRead = runs.filter((r): r is DataToRead => 'rows' in r);
    const { data } = await readRows(removed, toRead.flatMap((r) => r.rows), bs);
    let k = 0;
    // Direct: a copy is written once and not read back soon (see LayerFile.append).
    await target.append(
      runs.map((r): Run => {
        if (!('rows' in r)) return r;
        k += r.rows.length;
        return { kind: RecordKind.DATA, block: r.block, data: data.slice(k - r.rows.length, k), hashes: r.hashes, crcs: r.crcs };
      }),
      { direct: true },
    );
  };
  const pushRun = async (run: Run | DataToRead, rows: number, bytes = 0): Promise<void> => {
    if (rowsInBatch + rows > MAX_APPEND_ROWS || (bytesInBatch > 0 && bytesInBatch + bytes > BATCH_BYTES)) await flushBatch();
    batch.push(run);
    rowsInBatch += rows;
    bytesInBatch += bytes;
  };
  // Blocks served by the removed layer itself (DATA, or REF resolving into it) are
  // copied as data; consecutive ones are read with one read where contiguous.
  const ownData = view === undefined ? (b: number): boolean => removed.map.tag(b) === RecordKind.DATA : (b: number): boolean => view.merged.tag(b) === view.depth;
  const ownRow = view === undefined ? (b: number): number => removed.map.num(b) : (b: number): number => view.merged.num(b);
  let i = 0;
  while (i < blocks.length) {
    const first = blocks[i]!;
    const kind = removed.map.tag(first);
    if (kind === RecordKind.ZERO) {
      let n = 1;
      while (i + n < blocks.length && blocks[i + n] === first + n && removed.map.tag(first + n) === RecordKind.ZERO && n < MAX_APPEND_ROWS) n++;
      await pushRun({ kind: RecordKind.ZERO, block: first, count: n }, n);
      i += n;
      copiedBlocks += n;
      continue;
    }
    if (kind === RecordKind.REF && !ownData(first)) {
      await pushRun({ kind: RecordKind.REF, block: first, hashes: [Uint8Array.from(removed.records.hash(removed.map.num(first)))] }, 1);
      i += 1;
      copiedBlocks += 1;
      continue;
    }
    const rows: number[] = [];
    const hashes: (Uint8Array | undefined)[] = [];
    let n = 0;
    while (i + n < blocks.length && n < maxRunBlocks) {
      const b = blocks[i + n]!;
      if (b !== first + n || !ownData(b)) break;
      const k = removed.map.tag(b);
      if (k !== RecordKind.DATA && k !== RecordKind.REF) break;
      rows.push(ownRow(b));
      hashes.push(dataHash(removed, removed.map.num(b)));
      n++;
    }
    const known = hashes.every((h) => h !== undefined) ? (hashes as Uint8Array[]) : undefined;
    // The CRCs on record go with the data: readRows checks the data against them
    // before the batch is appended, so append need not compute them again.
    const crcs = rows.map((r) => removed.records.crc(r));
    await pushRun({ block: first, rows, hashes: known, crcs }, n, n * bs);
    i += n;
    copiedBlocks += n;
    copiedBytes += n * bs;
    sinceMark += n * bs;
    if (sinceMark >= PROGRESS_EVERY_BYTES && i < blocks.length) {
      await flushBatch();
      await mark(blocks[i]!);
      sinceMark = 0;
    }
  }
  await flushBatch();
  return { blocks: copiedBlocks, bytes: copiedBytes };
}

/**
 * Content that deduplicated blocks in `referrers` point at, and that lives only in
 * `removed`, is appended to `target` as BLOB records so it outlives the merge.
 */
async function keepReferenced(
  ctx: MergeContext,
  view: ChainView,
  removed: LayerFile,
  target: LayerFile,
  referrers: readonly { readonly id: string }[],
): Promise<void> {
  const d = ctx.descriptor();
  const bs = d.blockSize;
  const maxRunBlocks = Math.max(1, Math.floor(MAX_RECORD_PAYLOAD / bs));
  const removedSlot = view.depth;
  // References into the removed layer first: usually there are none, and then the
  // target's hashes (a whole layer of them) need not be looked at.
  const wanted: { layer: LayerFile; row: number }[] = [];
  for (const entry of referrers) {
    const layer = await ctx.layers.get(d, entry.id);
    for (let r = 0; r < layer.records.count; r++) {
      if (layer.records.kind(r) !== RecordKind.REF) continue;
      const hit = view.hashes!.find(layer.records.hash(r));
      if (hit !== undefined && hit.slot === removedSlot) wanted.push({ layer, row: r });
    }
  }
  if (wanted.length === 0) return;
  const held = new Set<string>();
  for (let r = 0; r < target.records.count; r++) {
    const k = target.records.kind(r);
    if ((k === RecordKind.DATA || k === RecordKind.BLOB) && target.records.hasHash(r)) held.add(Buffer.from(target.records.hash(r)).toString('hex'));
  }
  let blobs: Buffer[] = [];
  let blobHashes: Uint8Array[] = [];
  for (const { layer, row } of wanted) {
    const h = layer.records.hash(row);
    const key = Buffer.from(h).toString('hex');
    if (held.has(key)) continue;
    const hit = view.hashes!.find(h)!;
    held.add(key);
    blobs.push(await removed.readRow(hit.row));
    blobHashes.push(Uint8Array.from(h));
    if (blobs.length >= maxRunBlocks) {
      await target.append([{ kind: RecordKind.BLOB, data: blobs, hashes: blobHashes }]);
      blobs = [];
      blobHashes = [];
    }
  }
  if (blobs.length > 0) await target.append([{ kind: RecordKind.BLOB, data: blobs, hashes: blobHashes }]);
}

function dataHash(layer: LayerFile, row: number): Uint8Array | undefined {
  return layer.records.hasHash(row) ? Uint8Array.from(layer.records.hash(row)) : undefined;
}
