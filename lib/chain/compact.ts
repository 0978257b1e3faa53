/**
 * Compaction: rewriting one layer into a new delta file that holds only what is
 * still of use, optionally deduplicating it against its ancestors and itself.
 *
 * A log-structured layer accumulates records that later writes overwrote. The new
 * file gets the same layer id and the same content, block for block; it is written
 * and made durable under the next file number, then one descriptor replacement
 * switches the layer to it (the commit point), then the old file is unlinked. A
 * crash before the switch leaves an uncommitted file (numbered ≥ nextLayer, removed
 * on the next writable open); after it, an old file no descriptor names (removed
 * likewise). So no state record is needed, and the disk reads the same throughout.
 *
 * What must survive: every block's current record, and every content hash that a
 * reference in this layer or a descendant resolves into this layer (kept as data,
 * or as a BLOB record when no block of the layer maps to it any more).
 */
import { MAX_RECORD_PAYLOAD } from '../format/limits.js';
import { RecordKind } from '../format/record.js';
import { fromSystemError } from '../errors.js';
import path from 'node:path';
import { ChainView } from './chain-view.js';
import { LayerFile, MAX_APPEND_ROWS, sha256, type Run } from './layer-file.js';
import type { ChainContext } from './chain-context.js';
import { reconcileHeader } from './merge.js';
import { Tree } from './tree.js';
import { isAllZero } from './write-plan.js';

export interface CompactOptions {
  /** Store blocks identical to ones in an ancestor or earlier in the layer as references. */
  readonly dedup: boolean;
}

export interface CompactResult {
  readonly layer: string;
  readonly bytesBefore: number;
  readonly bytesAfter: number;
  readonly dedupedBlocks: number;
  readonly zeroedBlocks: number;
}

const hex = (h: Uint8Array): string => Buffer.from(h.buffer, h.byteOffset, h.byteLength).toString('hex');

/**
 * Compacts layer `id`. The caller holds the disk's mutex and rebuilds its views
 * afterwards (the LayerSet then serves the new file for `id`).
 */
export async function compactLayer(ctx: ChainContext, id: string, options: CompactOptions): Promise<CompactResult> {
  const d = ctx.descriptor();
  const tree = new Tree(d);
  const entry = tree.layer(id);
  const pathIds = tree.path(id).map((l) => l.id);
  const pathLayers = await ctx.layers.getAll(d, pathIds);
  const old = pathLayers[pathLayers.length - 1]!;
  const view = ChainView.build(ctx.base, pathLayers, d.virtualSize, d.blockSize, { indexHashes: true });
  const slot = view.depth;
  const bs = d.blockSize;
  const maxRun = Math.max(1, Math.floor(MAX_RECORD_PAYLOAD / bs));
  const bytesBefore = old.logEnd;

  const file = ctx.paths.layerFile(d.nextLayer);
  const next = await LayerFile.create(ctx.fs, ctx.paths.dir, file, {
    diskId: d.diskId,
    layerId: id,
    parentId: entry.parent,
    parentFile: entry.parent === null ? null : tree.layer(entry.parent).file,
    base: d.base,
    blockSize: d.blockSize,
    virtualSize: d.virtualSize,
  });
  let committed = false;
  try {
    const held = new Set<string>(); // hashes whose content the new file holds
    let runs: Run[] = [];
    let rows = 0;
    let dedupedBlocks = 0;
    let zeroedBlocks = 0;
    const flush = async (): Promise<void> => {
      if (runs.length > 0) await next.append(runs);
      runs = [];
      rows = 0;
    };
    const push = async (run: Run, n: number): Promise<void> => {
      if (rows + n > MAX_APPEND_ROWS) await flush();
      const last = runs[runs.length - 1];
      // Extend the previous run when it continues it.
      if (last !== undefined && last.kind === run.kind && run.kind !== RecordKind.BLOB) {
        // Runs join only when both know their hashes or neither does: a reference may
        // resolve to any stored copy, so a known hash must never be dropped.
        if (
          last.kind === RecordKind.DATA &&
          run.kind === RecordKind.DATA &&
          last.block + last.data.length === run.block &&
          last.data.length < maxRun &&
          (last.hashes === undefined) === (run.hashes === undefined)
        ) {
          (last.data as Uint8Array[]).push(...run.data);
          if (last.hashes !== undefined && run.hashes !== undefined) (last.hashes as Uint8Array[]).push(...run.hashes);
          rows += n;
          return;
        }
        if (last.kind === RecordKind.ZERO && run.kind === RecordKind.ZERO && last.block + last.count === run.block) {
          runs[runs.length - 1] = { ...last, count: last.count + run.count };
          rows += n;
          return;
        }
      }
      runs.push(run);
      rows += n;
    };
    /** Is `h` stored below this layer (so a reference to it resolves without us)? */
    const below = (h: Uint8Array): boolean => {
      const hit = view.hashes!.find(h);
      return hit !== undefined && hit.slot < slot;
    };

    const blocks = old.map.blocks();
    for (const block of blocks) {
      const kind = old.map.tag(block);
      const row = old.map.num(block);
      if (kind === RecordKind.ZERO) {
        await push({ kind: RecordKind.ZERO, block, count: 1 }, 1);
        continue;
      }
      let hash: Uint8Array | undefined = old.records.hasHash(row) ? Uint8Array.from(old.records.hash(row)) : undefined;
      if (kind === RecordKind.REF && !options.dedup && hash !== undefined && below(hash)) {
        await push({ kind: RecordKind.REF, block, hashes: [hash] }, 1);
        continue;
      }
      if (kind === RecordKind.REF && hash !== undefined && (below(hash) || held.has(hex(hash)))) {
        await push({ kind: RecordKind.REF, block, hashes: [hash] }, 1);
        continue;
      }
      // The block's bytes, wherever the view finds them (this layer, for DATA and self-refs).
      const data = Buffer.allocUnsafe(bs);
      await view.readBlock(block, data);
      if (options.dedup) {
        if (isAllZero(data)) {
          await push({ kind: RecordKind.ZERO, block, count: 1 }, 1);
          zeroedBlocks++;
          continue;
        }
        hash ??= sha256(data);
        if (below(hash) || held.has(hex(hash))) {
          await push({ kind: RecordKind.REF, block, hashes: [hash] }, 1);
          dedupedBlocks++;
          continue;
        }
      }
      if (hash !== undefined) held.add(hex(hash));
      await push({ kind: RecordKind.DATA, block, data: [data], hashes: hash === undefined ? undefined : [hash] }, 1);
    }
    await flush();

    // Content that references (here or further up) need from this layer.
    const referrers = [entry, ...tree.descendants(id)];
    const blobs: Buffer[] = [];
    const blobHashes: Uint8Array[] = [];
    for (const r of referrers) {
      const layer = r.id === id ? old : await ctx.layers.get(d, r.id);
      for (let k = 0; k < layer.records.count; k++) {
        if (layer.records.kind(k) !== RecordKind.REF) continue;
        const h = layer.records.hash(k);
        if (held.has(hex(h))) continue;
        // Only references resolving into this layer matter here; the lowest stored
        // copy is the one a view resolves to.
        const hit = view.hashes!.find(h);
        if (hit === undefined || hit.slot !== slot) continue;
        held.add(hex(h));
        blobs.push(await old.readRow(hit.row));
        blobHashes.push(Uint8Array.from(h));
        if (blobs.length >= maxRun) await next.append([{ kind: RecordKind.BLOB, data: blobs.splice(0), hashes: blobHashes.splice(0) }]);
      }
    }
    if (blobs.length > 0) await next.append([{ kind: RecordKind.BLOB, data: blobs, hashes: blobHashes }]);

    const snap = tree.snapshotOn(id);
    await next.sync();
    await next.updateHeader({
      sealed: id !== d.active,
      snapshot: snap === undefined ? null : { id: snap.id, name: snap.name, created: snap.created },
    });
    await ctx.commitDescriptor({
      ...d,
      generation: d.generation + 1,
      nextLayer: d.nextLayer + 1,
      layers: d.layers.map((l) => (l.id === id ? { ...l, file } : l)),
    });
    committed = true;
    await ctx.layers.forget(id);
    ctx.layers.add(next);
    // Children name their parent's file in their headers.
    for (const child of tree.children(id)) await reconcileHeader(ctx.layers, ctx.descriptor(), child.id);
    const oldPath = path.join(ctx.paths.dir, entry.file);
    await ctx.fs.unlink(oldPath).catch((err: unknown) => {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw fromSystemError(err, oldPath, 'removing compacted layer failed');
    });
    await ctx.fs.syncDir(ctx.paths.dir).catch((err: unknown) => {
      throw fromSystemError(err, ctx.paths.dir, 'syncing directory failed');
    });
    return { layer: id, bytesBefore, bytesAfter: next.logEnd, dedupedBlocks, zeroedBlocks };
  } catch (err) {
    if (!committed) {
      await next.release();
      await ctx.fs.unlink(path.join(ctx.paths.dir, file)).catch(() => undefined);
    }
    throw err;
  }
}
