/**
 * Sequential reads with a few requests in flight, so the next pieces are on their
 * way (in the thread pool) while the current one is hashed on the main thread.
 * Memory is bounded by `depth` × `pieceSize` plus what the consumer keeps. A consumer
 * that is done with a piece and kept no view of it hands it back (`recycle`): reading
 * into memory already mapped saves the page faults of a fresh buffer, which is most
 * of the cost of reading the holes of a sparse image.
 */
import { fromSystemError } from '../errors.js';
import type { FileHandle } from '../io/file-system.js';

async function readPiece(handle: FileHandle, position: number, length: number, spare: Buffer[]): Promise<Buffer> {
  const buf = spare.pop() ?? Buffer.allocUnsafe(length);
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

/** Yields the file's bytes from offset 0 to end of file, in pieces of `pieceSize` (the last shorter). */
export function readAhead(handle: FileHandle, pieceSize: number, depth = 3): ReadAhead {
  const spare: Buffer[] = [];
  const gen = pieces(handle, pieceSize, depth, spare) as ReadAhead;
  gen.recycle = (piece: Buffer): void => {
    if (piece.buffer.byteLength === pieceSize && piece.byteOffset === 0 && spare.length < depth) spare.push(Buffer.from(piece.buffer, 0, pieceSize));
  };
  return gen;
}

async function* pieces(handle: FileHandle, pieceSize: number, depth: number, spare: Buffer[]): AsyncGenerator<Buffer> {
  const queue: Promise<Buffer>[] = [];
  let next = 0;
  let eof = false;
  const fill = (): void => {
    while (!eof && queue.length < depth) {
      const p = readPiece(handle, next, pieceSize, spare);
      p.catch(() => undefined); // handled when awaited; avoid an unhandled rejection meanwhile
      queue.push(p);
      next += pieceSize;
    }
  };
  try {
    fill();
    while (queue.length > 0) {
      const piece = await queue.shift()!;
      if (piece.length < pieceSize) eof = true;
      if (piece.length > 0) yield piece;
      if (eof) break;
      fill();
    }
  } finally {
    await Promise.allSettled(queue);
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
