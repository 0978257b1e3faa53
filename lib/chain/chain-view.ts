/**
 * A point in time of a disk: a base plus a path of layers, merged into one map.
 *
 * Building the view walks each layer's map once, bottom to top, and records for
 * every block present in any layer where its bytes are (layer slot, record row:
 * the row gives the file offset and the block's CRC), that it reads as zeros, or
 * nothing (it comes from the base). A read then costs one table lookup per block
 * however deep the chain, and the extent reads of one request are issued
 * concurrently. Memory is that of the blocks present.
 *
 * A read may verify every block it takes from a layer against its CRC (a partly
 * requested block is then read whole): damaged data ends in CHECKSUM_MISMATCH.
 * Whole-block reads for copies (`readBlock`: completing a partial write,
 * compaction) always verify, so damage is never copied under a fresh CRC; other
 * reads verify when asked (it costs a CRC per block, and a whole block per partly
 * read one: see docs/DESIGN.md).
 *
 * REF records (dedup) are resolved here, once: the hash index of the path tells
 * which stored copy a reference reads.
 */
import { DeltaDiskError } from '../errors.js';
import { MAX_IO_LENGTH } from '../format/limits.js';
import { RecordKind } from '../format/record.js';
import { readInto, readvInto } from '../io/positional.js';
import type { BaseImage } from './base-image.js';
import { checksumBlocks } from './block-checksums.js';
import { BlockTable } from './block-table.js';
import { HashIndex } from './hash-index.js';
import type { LayerFile } from './layer-file.js';

/** Extents of one file at most this far apart are read with one readv. */
const MAX_BRIDGE = 128 * 1024;
let scratchBuffer = Buffer.allocUnsafe(MAX_BRIDGE);
/** Scratch space for bridged gaps: written by reads, never read. */
function scratch(n: number): Buffer {
  if (scratchBuffer.length < n) scratchBuffer = Buffer.allocUnsafe(n);
  return scratchBuffer.subarray(0, n);
}

/** The extents of one request (see `ChainView.readInto`). */
interface Extents {
  readonly tags: number[];
  readonly filePos: number[];
  readonly outPos: number[];
  readonly lens: number[];
  readonly own: (Buffer | undefined)[];
}

/** Tag of a block that reads as zeros. Tags 1 … MAX_DEPTH are layer slots; 0 is the base. */
export const ZERO_TAG = 0xffff;

/** Where one block of a view comes from. */
export type BlockSource =
  | { readonly kind: 'base' }
  | { readonly kind: 'zero'; readonly depth: number }
  | { readonly kind: 'data'; readonly depth: number; readonly layer: string; readonly offset: number };

export interface ViewOptions {
  /** Keep a hash index of every stored block (needed to write with dedup). */
  readonly indexHashes: boolean;
  /** Take only the first `topRows` rows of the top layer (a bookmark's point in time). */
  readonly topRows?: number;
}

export class ChainView {
  readonly virtualSize: number;
  readonly blockSize: number;
  readonly base: BaseImage;
  /** Layers bottom to top; slot i + 1 is layers[i]. */
  readonly layers: LayerFile[];
  readonly merged = new BlockTable();
  /** Tag of each merged block's layer at which it was last set (for ZERO: the layer slot too). */
  readonly #zeroDepth = new BlockTable();
  readonly #indexHashes: boolean;
  /** The hash index of the layers so far, once built (see `hashes`). */
  #index: HashIndex | undefined;

  private constructor(base: BaseImage, layers: LayerFile[], virtualSize: number, blockSize: number, indexHashes: boolean) {
    this.base = base;
    this.layers = layers;
    this.virtualSize = virtualSize;
    this.blockSize = blockSize;
    this.#indexHashes = indexHashes;
  }

  /**
   * The hash index of every stored block of the path (for writing with dedup), or
   * undefined for a view built without one. Built on first use, then kept current
   * as layers are pushed: a disk opened for writing but never written (a backup
   * snapshotting it) does not pay for indexing every block it holds.
   */
  get hashes(): HashIndex | undefined {
    if (!this.#indexHashes) return undefined;
    return (this.#index ??= this.#buildIndex());
  }

  get blockCount(): number {
    return Math.ceil(this.virtualSize / this.blockSize);
  }

  get depth(): number {
    return this.layers.length;
  }

  get top(): LayerFile | undefined {
    return this.layers[this.layers.length - 1];
  }

  /**
   * Builds the merged map of `layers` (bottom to top) over `base`.
   * @throws CHAIN_CORRUPT when a reference cannot be resolved.
   */
  static build(base: BaseImage, layers: readonly LayerFile[], virtualSize: number, blockSize: number, options: ViewOptions): ChainView {
    const view = new ChainView(base, [], virtualSize, blockSize, options.indexHashes);
    layers.forEach((layer, i) => {
      if (i === layers.length - 1 && options.topRows !== undefined) {
        const at = layer.mapAt(options.topRows);
        view.pushLayer(layer, at.map, at.dataBlocks);
      } else {
        view.pushLayer(layer);
      }
    });
    return view;
  }

  /**
   * Adds a layer on top and merges its blocks in: those of `map` (the layer's own by
   * default; a bookmark's view passes the map of its rows, with its count of DATA blocks).
   */
  pushLayer(layer: LayerFile, map = layer.map, dataBlocks = layer.dataBlocks): void {
    this.layers.push(layer);
    const slot = this.layers.length;
    const table = layer.records;
    // An index once built stays current. Without one, references are resolved with
    // one built there and then (rare: only layers written with dedup hold them), over
    // the layers so far: a reference may point at content stored in any layer below.
    let index = this.#index;
    if (index !== undefined) indexLayer(index, slot, layer);
    else if (layerHasRefs(layer)) index = this.#index = this.#buildIndex();
    // A layer of data alone (the common case: no zero markers, no references) is
    // taken in page by page.
    if (dataBlocks === map.size) {
      this.merged.overlay(map, slot);
      return;
    }
    map.forEach((block, kind, row) => {
      if (kind === RecordKind.DATA) {
        this.merged.set(block, slot, row);
      } else if (kind === RecordKind.ZERO) {
        this.merged.set(block, ZERO_TAG, 0);
        this.#zeroDepth.set(block, slot, 0);
      } else if (kind === RecordKind.REF) {
        const hit = index!.find(table.hash(row));
        if (hit === undefined) {
          throw new DeltaDiskError('CHAIN_CORRUPT', `${layer.path}: block ${block} refers to content stored nowhere in its chain`, {
            path: layer.path,
            block,
            layer: layer.id,
          });
        }
        this.merged.set(block, hit.slot, hit.row);
      }
    });
  }

  #buildIndex(): HashIndex {
    const index = new HashIndex();
    this.layers.forEach((layer, i) => indexLayer(index, i + 1, layer));
    return index;
  }

  /** Records that `block` now reads the data of row `row` of the layer in `slot`. */
  setData(block: number, slot: number, row: number): void {
    this.merged.set(block, slot, row);
  }

  setZero(block: number, slot: number): void {
    this.merged.set(block, ZERO_TAG, 0);
    this.#zeroDepth.set(block, slot, 0);
  }

  /** True when `block` certainly reads as zeros. */
  isZero(block: number): boolean {
    const tag = this.merged.tag(block);
    if (tag === ZERO_TAG) return true;
    return tag === 0 && block * this.blockSize >= this.base.size;
  }

  source(block: number): BlockSource {
    const tag = this.merged.tag(block);
    if (tag === 0) return { kind: 'base' };
    if (tag === ZERO_TAG) return { kind: 'zero', depth: this.layers.length - this.#zeroDepth.tag(block) };
    const layer = this.layers[tag - 1]!;
    return { kind: 'data', depth: this.layers.length - tag, layer: layer.id, offset: layer.records.offset(this.merged.num(block)) };
  }

  assertRange(offset: number, length: number): void {
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0) {
      throw new DeltaDiskError('INVALID_ARGUMENT', `offset ${offset} and length ${length} must be non-negative safe integers`, { offset });
    }
    if (offset + length > this.virtualSize) {
      throw new DeltaDiskError('OUT_OF_RANGE', `range ${offset}+${length} ends past the disk's size ${this.virtualSize}`, { offset });
    }
    if (length > MAX_IO_LENGTH) {
      throw new DeltaDiskError('LIMIT_EXCEEDED', `a single request may cover at most ${MAX_IO_LENGTH} bytes`, { offset });
    }
  }

  /** Reads `length` bytes at `offset` (validated by the caller), verified when `verify`. */
  read(offset: number, length: number, verify = false): Promise<Buffer> {
    const out = Buffer.allocUnsafe(length);
    return this.readInto(out, offset, verify).then(() => out);
  }

  /**
   * Fills `out` with the bytes at `offset`; with `verify`, every layer block is
   * checked against its CRC (CHECKSUM_MISMATCH).
   *
   * The request is cut into extents (runs of blocks from one place, contiguous in
   * it). Extents of the same file separated by a small gap are read with one readv
   * whose gap bytes land in a scratch buffer: a syscall costs more than copying
   * ~128 KiB from the page cache. The reads of different files run concurrently.
   * Verifying, a layer block the request covers only in part is read whole (its CRC
   * covers the whole block) into a buffer of its own, in the same readv as its
   * neighbours, and the part copied out once verified.
   */
  readInto(out: Buffer, offset: number, verify = false): Promise<void> {
    return this.gatherInto(out, [offset], [out.length], verify);
  }

  /**
   * Fills `out` with ranges `starts[k]`, `lengths[k]` of the disk, back to back
   * (validated by the caller: `out` is exactly as long as the ranges), as one
   * request (see `readInto`). The extents of all the ranges are read together, in
   * file order: blocks scattered over the disk but stored near each other (an
   * incremental backup's changed blocks, appended to a layer as they were written)
   * cost a few reads, not one each.
   */
  gatherInto(out: Buffer, starts: readonly number[], lengths: readonly number[], verify = false): Promise<void> {
    if (out.length === 0) return Promise.resolve();
    const bs = this.blockSize;
    // Extents, in request order: tag (0 base, ZERO_TAG, slot), file position, and
    // where the bytes go: out[outPos, outPos + len), or a whole-block buffer of its own.
    const x: Extents = { tags: [], filePos: [], outPos: [], lens: [], own: [] };
    // Layer blocks to verify once read: slot, row, position in out (-1: partial, in own[ownAt]).
    const checks: number[] = [];
    let outAt = 0;
    for (let r = 0; r < starts.length; r++) {
      const offset = starts[r]!;
      const end = offset + lengths[r]!;
      // out[outAt + (pos - offset)] holds the byte at pos.
      const shift = outAt - offset;
      let pos = offset;
      while (pos < end) {
        const block = Math.floor(pos / bs);
        const within = pos - block * bs;
        const len = Math.min(bs - within, end - pos);
        const tag = this.merged.tag(block);
        let fp: number;
        if (tag === 0) fp = pos;
        else if (tag === ZERO_TAG) fp = 0;
        else if (!verify) fp = this.layers[tag - 1]!.records.offset(this.merged.num(block)) + within;
        else {
          const row = this.merged.num(block);
          fp = this.layers[tag - 1]!.records.offset(row);
          if (len < bs) {
            checks.push(tag, row, pos + shift, x.tags.length, within, len);
            x.tags.push(tag);
            x.filePos.push(fp);
            x.outPos.push(-1);
            x.lens.push(bs);
            x.own.push(Buffer.allocUnsafe(bs));
            pos += len;
            continue;
          }
          checks.push(tag, row, pos + shift, -1, 0, bs);
        }
        // Ranges lie back to back in out, so an extent that continues the last one in
        // the file continues it in out too.
        const last = x.tags.length - 1;
        if (last >= 0 && x.tags[last] === tag && x.own[last] === undefined && (tag === ZERO_TAG || x.filePos[last]! + x.lens[last]! === fp)) {
          x.lens[last]! += len;
        } else {
          x.tags.push(tag);
          x.filePos.push(fp);
          x.outPos.push(pos + shift);
          x.lens.push(len);
          x.own.push(undefined);
        }
        pos += len;
      }
      outAt += lengths[r]!;
    }
    const jobs = this.#readExtents(out, x);
    // Every read has ended when the request settles, failed or not: nothing is left
    // writing into buffers the caller may reuse.
    const done = jobs.length === 1 ? jobs[0]! : Promise.allSettled(jobs).then(firstFailure);
    if (checks.length === 0) return done.then(() => undefined);
    return done.then(async () => {
      // One checksumBlocks call for the whole read (CRC-32 alone runs on this thread:
      // as fast as handing it to the helper, see block-checksums.ts).
      const blocks: Buffer[] = [];
      for (let i = 0; i < checks.length; i += 6) {
        const at = checks[i + 2]!;
        const ownAt = checks[i + 3]!;
        blocks.push(ownAt < 0 ? out.subarray(at, at + bs) : x.own[ownAt]!);
      }
      const { crcs } = await checksumBlocks(blocks, { crc32: true, sha256: false });
      for (let i = 0, k = 0; i < checks.length; i += 6, k++) {
        const layer = this.layers[checks[i]! - 1]!;
        const row = checks[i + 1]!;
        if (crcs[k] !== layer.records.crc(row)) layer.verifyRow(row, blocks[k]!); // throws CHECKSUM_MISMATCH
        if (checks[i + 3]! >= 0) blocks[k]!.copy(out, checks[i + 2]!, checks[i + 4]!, checks[i + 4]! + checks[i + 5]!);
      }
    });
  }

  /** Issues the reads of the extents (zeros are filled at once); returns them. */
  #readExtents(out: Buffer, x: Extents): Promise<void>[] {
    const target = (i: number): Buffer => x.own[i] ?? out.subarray(x.outPos[i]!, x.outPos[i]! + x.lens[i]!);
    const read = (tag: number, iov: Buffer[], at: number): Promise<void> => {
      if (iov.length > 1) return readvInto(tag === 0 ? this.base.handle! : this.layers[tag - 1]!.handle, iov, at);
      return tag === 0 ? this.base.read(iov[0]!, at) : readInto(this.layers[tag - 1]!.handle, iov[0]!, at);
    };
    if (x.tags.length === 1) {
      if (x.tags[0] === ZERO_TAG) {
        out.fill(0);
        return [];
      }
      return [read(x.tags[0]!, [target(0)], x.filePos[0]!)];
    }
    // Group the extents of each file, in file order, and bridge small gaps.
    const byFile = new Map<number, number[]>();
    for (let i = 0; i < x.tags.length; i++) {
      const tag = x.tags[i]!;
      if (tag === ZERO_TAG) {
        target(i).fill(0);
        continue;
      }
      let list = byFile.get(tag);
      if (list === undefined) byFile.set(tag, (list = []));
      list.push(i);
    }
    const jobs: Promise<void>[] = [];
    for (const [tag, list] of byFile) {
      if (tag !== 0) list.sort((a, b) => x.filePos[a]! - x.filePos[b]!);
      let k = 0;
      while (k < list.length) {
        const first = list[k]!;
        const iov: Buffer[] = [target(first)];
        let cursor = x.filePos[first]! + x.lens[first]!;
        let j = k + 1;
        while (j < list.length) {
          const e = list[j]!;
          const gap = x.filePos[e]! - cursor;
          if (gap < 0 || gap > MAX_BRIDGE || (tag === 0 && x.filePos[e]! + x.lens[e]! > this.base.size)) break;
          if (gap > 0) iov.push(scratch(gap));
          iov.push(target(e));
          cursor = x.filePos[e]! + x.lens[e]!;
          j++;
        }
        jobs.push(read(tag, iov, x.filePos[first]!));
        k = j;
      }
    }
    return jobs;
  }

  /** Reads whole block `block` into `out` (blockSize bytes), verified; zero beyond the virtual size. */
  async readBlock(block: number, out: Buffer): Promise<void> {
    const start = block * this.blockSize;
    const inside = Math.min(this.blockSize, this.virtualSize - start);
    await this.readInto(out.subarray(0, inside), start, true);
    if (inside < this.blockSize) out.fill(0, inside);
  }
}

/** Throws the reason of the first rejected result, if any. */
function firstFailure(results: readonly PromiseSettledResult<void>[]): void {
  for (const r of results) if (r.status === 'rejected') throw r.reason;
}

/** Adds the hashed DATA and BLOB rows of the layer in `slot` to `index`. */
function indexLayer(index: HashIndex, slot: number, layer: LayerFile): void {
  const t = layer.records;
  index.setTable(slot, t);
  index.reserve(t.count);
  for (let row = 0; row < t.count; row++) {
    const k = t.kind(row);
    if ((k === RecordKind.DATA || k === RecordKind.BLOB) && t.hasHash(row)) index.add(slot, row, t.hash(row));
  }
}

/** True when the layer holds any REF (dedup reference) record. */
export function layerHasRefs(layer: LayerFile): boolean {
  return layer.records.hasKind(RecordKind.REF);
}
