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
 * What must survive: every block's current record, every record a bookmark on the
 * layer reads (its row count is rewritten with the switch), and every content hash
 * that a reference in this layer or a descendant resolves into this layer (kept as
 * data, or as a BLOB record when no block of the layer maps to it any more).
 */
import { MAX_RECORD_PAYLOAD } from '../format/limits.js';
import { RecordKind } from '../format/record.js';
import { DeltaDiskError, fromSystemError } from '../errors.js';
import path from 'node:path';
import { ChainView } from './chain-view.js';
import { LayerFile, MAX_APPEND_ROWS, sha256, type Run } from './layer-file.js';
import type { ChainContext } from './chain-context.js';
import { reconcileHeader } from './merge.js';
import { Tree } from './tree.js';
import { isAllZero } from './write-plan.js';
import { readRows } from './read-rows.js';
import { BufferPool } from '../io/buffer-pool.js';

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

/**
 * Data read and appended at once. Compaction holds two batches, each read with the
 * gaps between its rows (a quarter of a block at most per row) in spans the pool
 * rounds up to a power of two: ~80 MiB at most, whatever the layer's size. With its
 * record headers and padding an append stays within a 16 MiB staging buffer
 * (LayerFile.append), the size a merge's takes after a backup.
 */
const BATCH_BYTES = 15 * 1024 * 1024;

/**
 * Blocks `blocks[first, end)` of the layer and the data they need: the rows of this
 * layer to read (`rowOf[i]`, an index into `rows`, for a DATA block), the blocks to
 * read through the view (`refOf[i]`, into `refs`, for a reference), -1 for none.
 */
interface Batch {
  readonly first: number;
  readonly end: number;
  readonly rowOf: readonly number[];
  readonly refOf: readonly number[];
  readonly rows: readonly number[];
  readonly refs: readonly number[];
}

/** A batch's data as read: block `first + i`'s bytes; `release` once appended. */
interface BatchData {
  data(i: number): Buffer;
  release(): void;
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
  let committing = false;
  let committed = false;
  try {
    const held = new Set<string>(); // hashes whose content the new file holds
    let runs: Run[] = [];
    let rows = 0;
    let dedupedBlocks = 0;
    let zeroedBlocks = 0;
    const flush = async (): Promise<void> => {
      // Direct: the new file is written once and not read back soon (LayerFile.append).
      if (runs.length > 0) await next.append(runs, { direct: true });
      runs = [];
      rows = 0;
    };
    const push = async (run: Run, n: number): Promise<void> => {
      if (rows + n > MAX_APPEND_ROWS) await flush();
      const last = runs[runs.length - 1];
      // Extend the previous run when it continues it.
      if (last !== undefined && last.kind === run.kind && run.kind !== RecordKind.BLOB) {
        // Runs join only when both know their hashes or neither does: a reference may
        // resolve to any stored copy, so a known hash must never be dropped. Likewise
        // their CRCs (known for the rows read from this layer, else computed by append).
        if (
          last.kind === RecordKind.DATA &&
          run.kind === RecordKind.DATA &&
          last.block + last.data.length === run.block &&
          last.data.length < maxRun &&
          (last.hashes === undefined) === (run.hashes === undefined) &&
          (last.crcs === undefined) === (run.crcs === undefined)
        ) {
          (last.data as Uint8Array[]).push(...run.data);
          if (last.hashes !== undefined && run.hashes !== undefined) (last.hashes as Uint8Array[]).push(...run.hashes);
          if (last.crcs !== undefined && run.crcs !== undefined) (last.crcs as number[]).push(...run.crcs);
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

    // Two batches at a time: their spans (gaps included) and the blocks references resolve to.
    const pool = new BufferPool(6 * BATCH_BYTES);
    // The rows of each pass: the blocks and the map they are looked up in (set per pass, below).
    let blocks: number[] = [];
    let map = old.map;

    /** The batch from `blocks[first]`: which blocks need their data read, and how. */
    const plan = (first: number): Batch => {
      const rowOf: number[] = [];
      const refOf: number[] = [];
      const rows: number[] = [];
      const refs: number[] = [];
      let end = first;
      for (; end < blocks.length && end - first < MAX_APPEND_ROWS; end++) {
        const block = blocks[end]!;
        const kind = map.tag(block);
        const row = map.num(block);
        const known = kind === RecordKind.REF && old.records.hasHash(row) ? old.records.hash(row) : undefined;
        // A ZERO block, or a reference resolving below this layer, is kept without its data.
        const needed = !(kind === RecordKind.ZERO || (known !== undefined && below(known)));
        if (needed && (rows.length + refs.length + 1) * bs > BATCH_BYTES) break;
        rowOf.push(needed && kind === RecordKind.DATA ? rows.push(row) - 1 : -1);
        refOf.push(needed && kind !== RecordKind.DATA ? refs.push(block) - 1 : -1);
      }
      return { first, end, rowOf, refOf, rows, refs };
    };

    /**
     * A reference's content. The view reads blocks as they are now; a bookmark's pass
     * needs them as they were, so its references are read by their hash.
     */
    const readRef = async (block: number, out: Buffer): Promise<void> => {
      if (map === old.map) return view.readBlock(block, out);
      const hit = view.hashes!.find(old.records.hash(map.num(block)));
      if (hit === undefined) {
        throw new DeltaDiskError('CHAIN_CORRUPT', `${old.path}: block ${block} refers to content stored nowhere in its chain`, { path: old.path, block, layer: id });
      }
      (await view.layers[hit.slot - 1]!.readRow(hit.row)).copy(out);
    };

    /**
     * Reads a batch's data: its own rows in file order, several to a read (a layer
     * a backup's anchors merged into holds the blocks overwritten since scattered
     * through its log), and the blocks of references through the view, meanwhile.
     */
    const read = async (batch: Batch): Promise<BatchData> => {
      const refData = batch.refs.map(() => pool.acquire(bs));
      const release = (): void => {
        for (const b of refData) pool.release(b);
      };
      try {
        const reading = readRows(old, batch.rows, bs, { pool });
        reading.catch(() => undefined); // awaited below, after the references' reads
        const refsRead = await Promise.allSettled(batch.refs.map((block, k) => readRef(block, refData[k]!)));
        const own = await reading;
        for (const r of refsRead) {
          if (r.status === 'rejected') {
            own.release();
            throw r.reason;
          }
        }
        return {
          data: (i) => (batch.rowOf[i]! >= 0 ? own.data[batch.rowOf[i]!]! : refData[batch.refOf[i]!]!),
          release: () => {
            own.release();
            release();
          },
        };
      } catch (err) {
        release();
        throw err;
      }
    };

    /** Decides each block of a batch in order and appends the batch. */
    const write = async (batch: Batch, got: BatchData): Promise<void> => {
      for (let i = 0; i < batch.end - batch.first; i++) {
        const block = blocks[batch.first + i]!;
        const kind = map.tag(block);
        const row = map.num(block);
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
        // The block's bytes, wherever the view found them (this layer, for DATA and self-refs).
        const data = got.data(i);
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
        // A DATA row's CRC on record goes with it: readRows checked the data against it.
        const crcs = kind === RecordKind.DATA ? [old.records.crc(row)] : undefined;
        await push({ kind: RecordKind.DATA, block, data: [data], hashes: hash === undefined ? undefined : [hash], crcs }, 1);
      }
      // Appended before its data goes back to the pool.
      await flush();
    };

    // The blocks go in batches of up to BATCH_BYTES of data, each read while the one
    // before is appended past the page cache; a batch's blocks are decided in block
    // order as one at a time would be. Read block by block, appended through the page
    // cache from staging made afresh each time, compacting a 1 GiB layer a backup's
    // anchors had scattered took 5-7 s, inside the backup whose merge set it off.
    const copyPass = async (): Promise<void> => {
      let batch: Batch | undefined = blocks.length > 0 ? plan(0) : undefined;
      let reading = batch === undefined ? undefined : read(batch);
      while (batch !== undefined) {
        const got = await reading!;
        const next = batch.end < blocks.length ? plan(batch.end) : undefined;
        reading = next === undefined ? undefined : read(next);
        try {
          await write(batch, got);
        } catch (err) {
          await reading?.then((r) => r.release(), () => undefined);
          throw err;
        } finally {
          got.release();
        }
        batch = next;
      }
    };
    // Bookmarks on the layer name prefixes of its rows: each keeps the rows live at
    // its point in time. One pass per bookmark, oldest first, copies the blocks
    // written since the previous bookmark as they were at this one; a last pass copies
    // those written since the newest bookmark as they are now. So the rows live at a
    // bookmark are exactly those before the count of rows the new file had after its
    // pass, which becomes the bookmark's row count.
    const marks = [...new Set(tree.bookmarksOn(id).map((b) => b.rows!))].sort((a, b) => a - b);
    // A bookmark past the layer's rows is damage: refused, never copied as if current.
    for (const r of marks) old.assertRows(r);
    if (marks[marks.length - 1] === old.records.count) marks.pop();
    const rowsAfter = new Map<number, number>();
    let from = 0;
    for (const at of [...marks, old.records.count]) {
      map = at === old.records.count ? old.map : old.mapAt(at).map;
      blocks = map.blocks();
      if (from > 0) blocks = blocks.filter((b) => map.num(b) >= from);
      await copyPass();
      rowsAfter.set(at, next.records.count);
      from = at;
    }
    const translated = (rows: number): number => rowsAfter.get(rows) ?? next.records.count;

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
    // From here the new file may be named: a descriptor replacement that fails after
    // its rename (syncing the directory) has taken effect all the same.
    committing = true;
    await ctx.commitDescriptor({
      ...d,
      generation: d.generation + 1,
      nextLayer: d.nextLayer + 1,
      layers: d.layers.map((l) => (l.id === id ? { ...l, file } : l)),
      snapshots: d.snapshots.map((x) => (x.layer === id && x.rows !== undefined ? { ...x, rows: translated(x.rows) } : x)),
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
    if (!committed) await next.release();
    // Removed only while no descriptor can name it; after a failed commit, the next
    // writable open removes it if the descriptor on disk does not (leftover-files.ts).
    if (!committing) await ctx.fs.unlink(path.join(ctx.paths.dir, file)).catch(() => undefined);
    throw err;
  }
}
