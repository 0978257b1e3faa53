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
import type { ChainView } from './chain-view.js';
import { webcrypto } from 'node:crypto';
import { sha256, type Run } from './layer-file.js';

/** SHA-256 of each non-null block; several blocks are hashed concurrently on the thread pool. */
async function hashAll(blocks: readonly (Uint8Array | null)[]): Promise<(Buffer | undefined)[]> {
  const present = blocks.filter((b) => b !== null).length;
  if (present <= 1) return blocks.map((b) => (b === null ? undefined : sha256(b)));
  return Promise.all(blocks.map(async (b) => (b === null ? undefined : Buffer.from(await webcrypto.subtle.digest('SHA-256', b)))));
}

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

/**
 * Plans the write of `data` (or zeros when null) at `offset`, `length` bytes, all
 * within blocks [firstBlock, firstBlock + n). The caller holds the disk's mutex.
 */
export async function planWrite(
  view: ChainView,
  offset: number,
  length: number,
  data: Uint8Array | null,
  dedup: boolean,
): Promise<WritePlan> {
  const bs = view.blockSize;
  const end = offset + length;
  const maxRun = Math.max(1, Math.floor(MAX_RECORD_PAYLOAD / bs));
  const runs: Run[] = [];
  const blocks: PlannedBlock[] = [];
  const batchHashes = new Set<string>();

  let dataRun: { block: number; data: Uint8Array[]; hashes: Uint8Array[] | undefined } | undefined;
  let zeroRun: { block: number; count: number } | undefined;
  let refRun: { block: number; hashes: Uint8Array[] } | undefined;
  const close = (): void => {
    if (dataRun) runs.push({ kind: RecordKind.DATA, block: dataRun.block, data: dataRun.data, hashes: dataRun.hashes });
    if (zeroRun) runs.push({ kind: RecordKind.ZERO, block: zeroRun.block, count: zeroRun.count });
    if (refRun) runs.push({ kind: RecordKind.REF, block: refRun.block, hashes: refRun.hashes });
    dataRun = undefined;
    zeroRun = undefined;
    refRun = undefined;
  };

  // Pass 1: the full content of every block touched (copy-on-write for partial ones).
  const contents: { block: number; content: Uint8Array | null }[] = [];
  let pos = offset;
  while (pos < end) {
    const block = Math.floor(pos / bs);
    const blockStart = block * bs;
    const blockEnd = Math.min(blockStart + bs, view.virtualSize);
    const segEnd = Math.min(end, blockStart + bs);
    const covers = pos === blockStart && segEnd >= blockEnd;
    let content: Uint8Array | null;
    if (covers && data !== null && blockEnd - blockStart === bs) {
      content = data.subarray(pos - offset, pos - offset + bs);
    } else if (covers && data === null) {
      content = null;
    } else {
      const buf = Buffer.allocUnsafe(bs);
      await view.readBlock(block, buf);
      if (data === null) buf.fill(0, pos - blockStart, segEnd - blockStart);
      else buf.set(data.subarray(pos - offset, segEnd - offset), pos - blockStart);
      if (blockEnd - blockStart < bs) buf.fill(0, blockEnd - blockStart);
      content = buf;
    }
    contents.push({ block, content: content !== null && isAllZero(content) ? null : content });
    pos = segEnd;
  }
  // Pass 2: with dedup, hash every block at once: the digests run on the thread pool,
  // in parallel on every core, instead of one after another on this thread.
  const hashes = dedup ? await hashAll(contents.map((c) => c.content)) : [];

  // Pass 3: classify and group into runs.
  contents.forEach(({ block, content }, i) => {
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
    const hash = hashes[i];
    if (hash !== undefined) {
      const key = hash.toString('hex');
      if (view.hashes?.find(hash) !== undefined || batchHashes.has(key)) {
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
      dataRun = { block, data: [], hashes: dedup ? [] : undefined };
    }
    dataRun.data.push(content);
    if (hash !== undefined) dataRun.hashes!.push(hash);
    blocks.push({ kind: RecordKind.DATA, block, hash });
  });
  close();
  return { runs, blocks };
}
