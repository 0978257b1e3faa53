/**
 * Sequential reads with a few requests in flight, so the next pieces are on their
 * way (in the thread pool) while the current one is hashed on the main thread.
 * Memory is bounded by `depth` × `pieceSize` plus what the consumer keeps. A consumer
 * that is done with a piece and kept no view of it hands it back (`recycle`): reading
 * into memory already mapped saves the page faults of a fresh buffer, which is most
 * of the cost of reading the holes of a sparse image. On a direct handle (O_DIRECT)
 * pieces come from the process's aligned pool and go back to it.
 */
import { fromSystemError } from '../errors.js';
import { alignedPool } from '../io/buffer-pool.js';
import type { FileHandle } from '../io/file-system.js';

async function readPiece(handle: FileHandle, position: number, length: number, spare: Buffer[]): Promise<Buffer> {
  const buf = handle.direct === true ? alignedPool.acquire(length) : length === spare[spare.length - 1]?.length ? spare.pop()! : Buffer.allocUnsafe(length);
  let done = 0;
  while (done < length) {
    let n: number;
    try {
      n = await handle.read(buf, done, length - done, position + done);
    } catch (err) {
      throw fromSystemError(err, handle.path, 'read failed');
    }
    if (n === 0) break;
    done += n;
  }
  return done === length ? buf : buf.subarray(0, done);
}

export interface ReadAhead extends AsyncGenerator<Buffer> {
  /** Gives a piece back for reuse: the caller keeps no view of it. */
  recycle(piece: Buffer): void;
}

export interface ReadAheadOptions {
  /** Bytes per piece (every piece but the last is this long). */
  readonly pieceSize: number;
  /** Pieces read ahead (default 3). */
  readonly depth?: number;
  /**
   * The file's size when it was looked at. No piece is allocated past it (a file of
   * a few KiB costs a few KiB, not `depth` × `pieceSize`), and nothing is read ahead
   * beyond it; a file that grew meanwhile is still read to its end, a piece at a
   * time. The piece that ends the file is rounded up to `align` bytes.
   */
  readonly expectedSize?: number;
  /**
   * See `expectedSize` (default 1; pieceSize must be a multiple of it). On a direct
   * handle, a multiple of 4 KiB, as every read's length must be.
   */
  readonly align?: number;
}

/** Yields the file's bytes from offset 0 to end of file, in pieces of `pieceSize` (the last shorter). */
export function readAhead(handle: FileHandle, options: ReadAheadOptions): ReadAhead {
  const { pieceSize } = options;
  const spare: Buffer[] = [];
  const gen = pieces(handle, options, spare) as ReadAhead;
  gen.recycle = (piece: Buffer): void => {
    if (handle.direct === true) alignedPool.release(piece);
    else if (piece.buffer.byteLength === pieceSize && piece.byteOffset === 0 && spare.length < (options.depth ?? 3)) spare.push(Buffer.from(piece.buffer, 0, pieceSize));
  };
  return gen;
}

async function* pieces(handle: FileHandle, options: ReadAheadOptions, spare: Buffer[]): AsyncGenerator<Buffer> {
  const { pieceSize, expectedSize } = options;
  const depth = options.depth ?? 3;
  const align = options.align ?? 1;
  const queue: { read: Promise<Buffer>; length: number }[] = [];
  let next = 0;
  let eof = false;
  // The length of the piece at `next`, or 0 for none yet: past the expected size,
  // only once every piece before has come back full (the file grew).
  const lengthAt = (at: number): number => {
    if (expectedSize === undefined) return pieceSize;
    if (at > expectedSize) return queue.length === 0 ? pieceSize : 0;
    // One byte past the expected end, so a file of exactly that size ends in a short piece.
    return Math.min(pieceSize, Math.ceil((expectedSize - at + 1) / align) * align);
  };
  const fill = (): void => {
    while (!eof && queue.length < depth) {
      const length = lengthAt(next);
      if (length === 0) break;
      const read = readPiece(handle, next, length, spare);
      read.catch(() => undefined); // handled when awaited; avoid an unhandled rejection meanwhile
      queue.push({ read, length });
      next += length;
    }
  };
  try {
    fill();
    while (queue.length > 0) {
      const { read, length } = queue.shift()!;
      const piece = await read;
      if (piece.length < length) eof = true;
      if (piece.length > 0) yield piece;
      if (eof) break;
      fill();
    }
  } finally {
    await Promise.allSettled(queue.map((q) => q.read));
  }
}

/** Runs of consecutive indexes, each at most `maxRun` long: [start, count] pairs. */
export function runsOf(sorted: readonly number[], maxRun: number): [number, number][] {
  const out: [number, number][] = [];
  for (const i of sorted) {
    const last = out[out.length - 1];
    if (last !== undefined && last[0] + last[1] === i && last[1] < maxRun) last[1]++;
    else out.push([i, 1]);
  }
  return out;
}
