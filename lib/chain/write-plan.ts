/**
 * Turns a byte-range write into runs of whole-block records for the active layer.
 *
 * Partial blocks are completed from the current view (copy-on-write). A block of
 * zeros becomes a ZERO record, or nothing when it already reads as zeros. With
 * dedup, a block whose SHA-256 is already stored on the path (or earlier in the
 * same write) becomes a REF record. Full blocks are passed through as views of the
 * caller's buffer: no copy on the common path.
 */
import { MAX_RECORD_PAYLOAD } from '../format/limits.js';
import { RecordKind } from '../format/record.js';
import { checksumBlocks, type BlockChecksums } from './block-checksums.js';
import type { ChainView } from './chain-view.js';
import { MAX_APPEND_ROWS, type Run } from './layer-file.js';

/** What became of one block, in the order the runs list them. */
export type PlannedBlock =
  | { readonly kind: typeof RecordKind.DATA; readonly block: number; readonly hash: Uint8Array | undefined }
  | { readonly kind: typeof RecordKind.ZERO; readonly block: number }
  | { readonly kind: typeof RecordKind.REF; readonly block: number; readonly hash: Uint8Array };

export interface WritePlan {
  readonly runs: Run[];
  readonly blocks: PlannedBlock[];
}

const zeroBlocks = new Map<number, Buffer>();
function zeroBlock(size: number): Buffer {
  let z = zeroBlocks.get(size);
  if (z === undefined) {
    z = Buffer.alloc(size);
    zeroBlocks.set(size, z);
  }
  return z;
}

export function isAllZero(data: Uint8Array): boolean {
  const z = zeroBlock(data.length);
  return Buffer.from(data.buffer, data.byteOffset, data.byteLength).equals(z);
}

/** One write of a batch: `data`, or zeros when null, at `offset`. */
export interface PendingWrite {
  readonly offset: number;
  readonly length: number;
  readonly data: Uint8Array | null;
}

/** A batch is planned in pieces of a quarter of its block data, within these bounds (see planBatch). */
const PIECE_BYTES_MIN = 1024 * 1024;
const PIECE_BYTES_MAX = 8 * 1024 * 1024;

/**
 * Plans a batch of writes, applied in order, as runs for the active layer, in
 * pieces: each yielded plan is one `append`, to be applied before the next is
 * asked for or while it is being computed.
 *
 * Group commit: concurrent writers queue, and one plan covers them all. Blocks
 * written partially are read from the current view once and concurrently; a later
 * write in the batch lands on top of an earlier one; each block is stored once, with
 * its final content. The caller holds the disk's mutex.
 *
 * Pieces exist so that checksumming overlaps writing: each piece's checksums are
 * computed while the previous piece is being written (disk.ts starts an append,
 * then asks for the next piece). A piece is a quarter of the batch's block data, at
 * least 1 MiB (smaller pieces were measured slower: each costs a hand-off to the
 * checksum helper and an append) and at most 8 MiB, so a 1 MiB write is one piece
 * and an 8 MiB one four. A REF to a block of an earlier piece is sound because
 * pieces are appended in order.
 */
export async function* planBatch(view: ChainView, writes: readonly PendingWrite[], dedup: boolean): AsyncGenerator<WritePlan> {
  const { order, contents } = await finalContents(view, writes);
  let dataBytes = 0;
  for (const c of contents) if (c !== null) dataBytes += c.length;
  const pieceBytes = Math.min(PIECE_BYTES_MAX, Math.max(PIECE_BYTES_MIN, Math.ceil(dataBytes / 4)));
  const batchHashes = new Set<string>();
  for (let start = 0; start < order.length; ) {
    let end = start;
    let bytes = 0;
    while (end < order.length && bytes < pieceBytes && end - start < MAX_APPEND_ROWS) {
      bytes += contents[end]?.length ?? 0;
      end++;
    }
    const pieceContents = contents.slice(start, end);
    const sums = await checksumBlocks(pieceContents, { crc32: true, sha256: dedup });
    yield planPiece(view, order.slice(start, end), pieceContents, sums, dedup, batchHashes);
    start = end;
  }
}

/**
 * Each touched block's final content after the batch, in block order: a view of a
 * caller's buffer, a buffer of ours, or null for a block of zeros.
 */
async function finalContents(view: ChainView, writes: readonly PendingWrite[]): Promise<{ order: number[]; contents: (Uint8Array | null)[] }> {
  const bs = view.blockSize;
  const size = view.virtualSize;
  // `owned`: buffers of ours, safe to modify.
  const final = new Map<number, Uint8Array | null>();
  const owned = new Set<number>();

  // Pass 1: blocks whose current content a partial write builds on.
  const needRead = new Set<number>();
  const covered = new Set<number>();
  for (const w of writes) {
    forEachBlock(w, bs, size, (block, _from, _to, full) => {
      if (full) covered.add(block);
      else if (!covered.has(block)) needRead.add(block);
    });
  }
  await Promise.all(
    [...needRead].map(async (block) => {
      const buf = Buffer.allocUnsafe(bs);
      await view.readBlock(block, buf);
      final.set(block, buf);
      owned.add(block);
    }),
  );

  // Pass 2: apply the writes in order.
  for (const w of writes) {
    forEachBlock(w, bs, size, (block, from, to, full) => {
      const src = w.data === null ? null : w.data.subarray(block * bs + from - w.offset, block * bs + to - w.offset);
      if (full && to - from === bs) {
        final.set(block, src);
        owned.delete(block);
        return;
      }
      let buf = final.get(block);
      if (buf === undefined || !owned.has(block)) {
        const copy = Buffer.alloc(bs);
        if (buf !== undefined && buf !== null) copy.set(buf);
        buf = copy;
        final.set(block, copy);
        owned.add(block);
      }
      if (src === null) buf!.fill(0, from, to);
      else buf!.set(src, from);
      if (full) buf!.fill(0, to); // the disk's last, partial block: zero past its end
    });
  }
  const order = [...final.keys()].sort((a, b) => a - b);
  const contents = order.map((b) => {
    const c = final.get(b)!;
    return c !== null && isAllZero(c) ? null : c;
  });
  return { order, contents };
}

/**
 * Classifies the blocks of one piece, in order, as runs. `batchHashes` carries the
 * hashes stored as DATA by earlier pieces of the batch (not yet in the view's index
 * while they are being appended) and by this one.
 */
function planPiece(
  view: ChainView,
  order: readonly number[],
  contents: readonly (Uint8Array | null)[],
  sums: BlockChecksums,
  dedup: boolean,
  batchHashes: Set<string>,
): WritePlan {
  const maxRun = Math.max(1, Math.floor(MAX_RECORD_PAYLOAD / view.blockSize));
  const runs: Run[] = [];
  const blocks: PlannedBlock[] = [];
  let dataRun: { block: number; data: Uint8Array[]; crcs: number[]; hashes: Uint8Array[] | undefined } | undefined;
  let zeroRun: { block: number; count: number } | undefined;
  let refRun: { block: number; hashes: Uint8Array[] } | undefined;
  const close = (): void => {
    if (dataRun) runs.push({ kind: RecordKind.DATA, block: dataRun.block, data: dataRun.data, crcs: dataRun.crcs, hashes: dataRun.hashes });
    if (zeroRun) runs.push({ kind: RecordKind.ZERO, block: zeroRun.block, count: zeroRun.count });
    if (refRun) runs.push({ kind: RecordKind.REF, block: refRun.block, hashes: refRun.hashes });
    dataRun = undefined;
    zeroRun = undefined;
    refRun = undefined;
  };
  order.forEach((block, i) => {
    const content = contents[i]!;
    if (content === null) {
      if (view.isZero(block)) return; // already reads as zeros: nothing to store
      if (!zeroRun || zeroRun.block + zeroRun.count !== block) {
        close();
        zeroRun = { block, count: 0 };
      }
      zeroRun.count++;
      blocks.push({ kind: RecordKind.ZERO, block });
      return;
    }
    const hash = sums.hashes[i];
    if (hash !== undefined) {
      const key = hash.toString('hex');
      if (batchHashes.has(key) || view.hashes?.find(hash) !== undefined) {
        if (!refRun || refRun.block + refRun.hashes.length !== block || refRun.hashes.length >= maxRun) {
          close();
          refRun = { block, hashes: [] };
        }
        refRun.hashes.push(hash);
        blocks.push({ kind: RecordKind.REF, block, hash });
        return;
      }
      batchHashes.add(key);
    }
    if (!dataRun || dataRun.block + dataRun.data.length !== block || dataRun.data.length >= maxRun) {
      close();
      dataRun = { block, data: [], crcs: [], hashes: dedup ? [] : undefined };
    }
    dataRun.data.push(content);
    dataRun.crcs.push(sums.crcs[i]!);
    if (hash !== undefined) dataRun.hashes!.push(hash);
    blocks.push({ kind: RecordKind.DATA, block, hash });
  });
  close();
  return { runs, blocks };
}

/**
 * Calls `fn` for each block a write touches with the byte range [from, to) it
 * covers inside the block, and whether that is all of the block's bytes inside the
 * disk (`full`; the last block of a disk may be shorter than the block size).
 */
function forEachBlock(
  w: PendingWrite,
  bs: number,
  size: number,
  fn: (block: number, from: number, to: number, full: boolean) => void,
): void {
  let pos = w.offset;
  const end = w.offset + w.length;
  while (pos < end) {
    const block = Math.floor(pos / bs);
    const start = block * bs;
    const stop = Math.min(end, start + bs);
    const blockEnd = Math.min(start + bs, size);
    fn(block, pos - start, stop - start, pos === start && stop >= blockEnd);
    pos = stop;
  }
}
