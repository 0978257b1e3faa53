/**
 * Read-only access to one point in time of a disk: a snapshot opened with
 * `Disk.openSnapshot`, or the current state.
 *
 * A reader of a snapshot holds its own merged map and its own references to the
 * layer files, so it keeps returning the snapshot's bytes even if the snapshot is
 * deleted or merged away while it is open (the files stay readable until the last
 * reference goes).
 */
import { DeltaDiskError } from '../errors.js';
import { MAX_IO_LENGTH } from '../format/limits.js';

/** Ranges one `gatherInto` request may hold at most. */
export const MAX_GATHER_RANGES = 65536;
import type { BlockSource, ChainView } from './chain-view.js';

/** A run of consecutive blocks served from the same place (as `qemu-img map`). */
export interface Extent {
  readonly start: number;
  readonly length: number;
  /** base: the base image (or zeros beyond it); zero: reads as zeros; data: stored in a layer. */
  readonly kind: 'base' | 'zero' | 'data';
  /** Layers above the one serving it (0 = the top); undefined for the base. */
  readonly depth: number | undefined;
  readonly layer: string | undefined;
  /** Offset of the data in the layer file, for data extents. */
  readonly offset: number | undefined;
}

export class DiskReader {
  /** Snapshot name, or undefined for the current state. */
  readonly snapshot: string | undefined;
  readonly #getView: () => ChainView;
  readonly #verify: boolean;
  readonly #onClose: () => Promise<void>;
  #closed = false;

  /**
   * @param view the view, or a function returning the view of the moment (the current state).
   * @param verify check block CRCs on every read (the disk's `verifyReads`).
   */
  constructor(view: ChainView | (() => ChainView), snapshot: string | undefined, verify: boolean, onClose: () => Promise<void>) {
    this.#getView = typeof view === 'function' ? view : () => view;
    this.snapshot = snapshot;
    this.#verify = verify;
    this.#onClose = onClose;
  }

  get #view(): ChainView {
    return this.#getView();
  }

  get virtualSize(): number {
    return this.#view.virtualSize;
  }

  get blockSize(): number {
    return this.#view.blockSize;
  }

  /** @throws NOT_OPEN, INVALID_ARGUMENT, OUT_OF_RANGE, LIMIT_EXCEEDED, IO_ERROR, CHECKSUM_MISMATCH (verifying) */
  async read(offset: number, length: number): Promise<Buffer> {
    this.#assertOpen();
    this.#view.assertRange(offset, length);
    return this.#view.read(offset, length, this.#verify);
  }

  /** Fills `target` with the bytes at `offset` (a `read` into the caller's buffer). */
  async readInto(target: Buffer, offset: number): Promise<void> {
    this.#assertOpen();
    if (!Buffer.isBuffer(target)) throw new DeltaDiskError('INVALID_ARGUMENT', 'target must be a Buffer');
    this.#view.assertRange(offset, target.length);
    await this.#view.readInto(target, offset, this.#verify);
  }

  /**
   * Fills `target` with several ranges of the disk, back to back: `starts[k]`,
   * `lengths[k]` bytes each, `target` exactly their total. One request, read in file
   * order (see `ChainView.gatherInto`): scattered blocks stored near each other cost
   * a few reads, not one each.
   * @throws INVALID_ARGUMENT, OUT_OF_RANGE, LIMIT_EXCEEDED (more than MAX_GATHER_RANGES
   *   ranges, or blocks touched worth more than MAX_IO_LENGTH), and as `readInto`
   */
  async gatherInto(target: Buffer, starts: readonly number[], lengths: readonly number[]): Promise<void> {
    this.#assertOpen();
    if (!Buffer.isBuffer(target)) throw new DeltaDiskError('INVALID_ARGUMENT', 'target must be a Buffer');
    if (!Array.isArray(starts) || !Array.isArray(lengths) || starts.length !== lengths.length) {
      throw new DeltaDiskError('INVALID_ARGUMENT', 'starts and lengths must be arrays of the same length');
    }
    if (starts.length > MAX_GATHER_RANGES) throw new DeltaDiskError('LIMIT_EXCEEDED', `a request may gather at most ${MAX_GATHER_RANGES} ranges, not ${starts.length}`);
    const view = this.#view;
    const bs = view.blockSize;
    let total = 0;
    // What the request costs: a verified read takes every block it touches whole,
    // partly covered ones into buffers of their own.
    let charged = 0;
    for (let k = 0; k < starts.length; k++) {
      const start = starts[k]!;
      const length = lengths[k]!;
      view.assertRange(start, length);
      total += length;
      if (length > 0) charged += Math.ceil((start + length) / bs) * bs - Math.floor(start / bs) * bs;
    }
    if (charged > MAX_IO_LENGTH) throw new DeltaDiskError('LIMIT_EXCEEDED', `a single request may touch at most ${MAX_IO_LENGTH} bytes of blocks, these ranges ${charged}`);
    if (total !== target.length) throw new DeltaDiskError('INVALID_ARGUMENT', `the ranges hold ${total} bytes, the target ${target.length}`);
    await view.gatherInto(target, starts, lengths, this.#verify);
  }

  /** Where block `block` is served from. */
  source(block: number): BlockSource {
    this.#assertOpen();
    return this.#view.source(block);
  }

  /**
   * True when every byte of [offset, offset + length) certainly reads as zeros,
   * known from the map alone: zero markers, or blocks no layer stores past the end
   * of the base. A table lookup per block, no object per block (`extents` makes one).
   */
  isZeroRange(offset: number, length: number): boolean {
    this.#assertOpen();
    const view = this.#view;
    view.assertRange(offset, length);
    const bs = view.blockSize;
    const last = Math.floor((offset + length - 1) / bs);
    for (let b = Math.floor(offset / bs); b <= last; b++) if (!view.isZero(b)) return false;
    return true;
  }

  /** The disk as extents of blocks served from the same place, in order. */
  extents(): Extent[] {
    this.#assertOpen();
    const view = this.#view;
    const bs = view.blockSize;
    const out: Extent[] = [];
    const n = view.blockCount;
    const present = view.merged.blocks();
    let cursor = 0;
    let cur: { start: number; end: number; src: BlockSource } | undefined;
    const push = (block: number, src: BlockSource): void => {
      const start = block * bs;
      const end = Math.min(view.virtualSize, start + bs);
      if (cur !== undefined && cur.end === start && sameRun(cur.src, src, bs, start - cur.start)) {
        cur.end = end;
        return;
      }
      if (cur !== undefined) out.push(toExtent(cur));
      cur = { start, end, src };
    };
    const pushBase = (from: number, to: number): void => {
      if (from >= to) return;
      const start = from * bs;
      const end = Math.min(view.virtualSize, to * bs);
      const src: BlockSource = { kind: 'base' };
      if (cur !== undefined && cur.end === start && cur.src.kind === 'base') cur.end = end;
      else {
        if (cur !== undefined) out.push(toExtent(cur));
        cur = { start, end, src };
      }
    };
    for (const block of present) {
      pushBase(cursor, block);
      push(block, view.source(block));
      cursor = block + 1;
    }
    pushBase(cursor, n);
    if (cur !== undefined) out.push(toExtent(cur));
    return out;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#onClose();
  }

  #assertOpen(): void {
    if (this.#closed) throw new DeltaDiskError('NOT_OPEN', 'this reader is closed');
  }
}

function sameRun(a: BlockSource, b: BlockSource, _bs: number, distance: number): boolean {
  if (a.kind !== b.kind) return false;
  if (a.kind === 'zero' && b.kind === 'zero') return a.depth === b.depth;
  if (a.kind === 'data' && b.kind === 'data') return a.layer === b.layer && a.offset + distance === b.offset;
  return a.kind === 'base';
}

function toExtent(c: { start: number; end: number; src: BlockSource }): Extent {
  const s = c.src;
  return {
    start: c.start,
    length: c.end - c.start,
    kind: s.kind,
    depth: s.kind === 'base' ? undefined : s.depth,
    layer: s.kind === 'data' ? s.layer : undefined,
    offset: s.kind === 'data' ? s.offset : undefined,
  };
}
