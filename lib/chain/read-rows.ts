/**
 * Reading many data rows of one layer at once: a merge's copy, a compaction's batch.
 *
 * The rows are read in file order, those at most a quarter block apart with one read
 * of at most MAX_SPAN (what lies between, record headers, map segments or
 * overwritten blocks, is read and dropped: at most a quarter more than the data),
 * several reads in flight. Every row is checked
 * against its CRC: a copy must fail on damaged data, never launder it under a fresh
 * CRC. A layer written in random order (a backup's older anchor holds blocks in the
 * order they were written, a record each) costs a few reads, not one per row.
 */
import { readInto } from '../io/positional.js';
import type { BufferPool } from '../io/buffer-pool.js';
import type { LayerFile } from './layer-file.js';

/** The longest read of several rows. */
const MAX_SPAN = 8 * 1024 * 1024;

export interface RowsRead {
  /** The blocks of the rows asked for, in that order (views of the spans read). */
  readonly data: Buffer[];
  /** Gives the spans back to the pool (when one was given); after the last use of `data`. */
  release(): void;
}

export interface ReadRowsOptions {
  /** Where the spans come from (and go back to on `release`); fresh memory otherwise. */
  readonly pool?: BufferPool;
}

/**
 * Reads the blocks of DATA rows `rows` of `layer` (`bs` bytes each), verified.
 * @throws CHECKSUM_MISMATCH, IO_ERROR; every read has ended when it rejects
 */
export async function readRows(layer: LayerFile, rows: readonly number[], bs: number, options: ReadRowsOptions = {}): Promise<RowsRead> {
  const gap = bs / 4;
  const at = (k: number): number => layer.dataOffset(rows[k]!);
  const order = rows.map((_, k) => k).sort((a, b) => at(a) - at(b));
  const out = new Array<Buffer>(rows.length);
  const spans: Buffer[] = [];
  const release = (): void => {
    for (const s of spans) options.pool?.release(s);
    spans.length = 0;
  };
  const reads: Promise<void>[] = [];
  for (let i = 0; i < order.length; ) {
    const start = at(order[i]!);
    let end = start + bs;
    let j = i + 1;
    while (j < order.length && at(order[j]!) - end <= gap && at(order[j]!) + bs - start <= MAX_SPAN) {
      end = Math.max(end, at(order[j]!) + bs);
      j++;
    }
    const span = options.pool?.acquire(end - start) ?? Buffer.allocUnsafe(end - start);
    spans.push(span);
    const members = order.slice(i, j);
    reads.push(
      readInto(layer.handle, span, start).then(() => {
        for (const k of members) {
          const data = span.subarray(at(k) - start, at(k) - start + bs);
          layer.verifyRow(rows[k]!, data);
          out[k] = data;
        }
      }),
    );
    i = j;
  }
  const settled = await Promise.allSettled(reads);
  for (const r of settled) {
    if (r.status === 'rejected') {
      release();
      throw r.reason;
    }
  }
  return { data: out, release };
}
