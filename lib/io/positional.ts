/**
 * Positional I/O that either does the whole job or says precisely why not.
 *
 * A read that meets end of file before `length` bytes is a TRUNCATED error naming
 * the file, the offset and the sizes (a damaged or cut-off file, never silently
 * short data); operating-system failures become IO_ERROR / NO_SPACE.
 */
import { DeltaDiskError, fromSystemError } from '../errors.js';
import type { FileHandle } from './file-system.js';

/** Reads exactly `length` bytes at `position` into a new buffer. */
export async function readExactly(handle: FileHandle, position: number, length: number): Promise<Buffer> {
  const buf = Buffer.allocUnsafe(length);
  await readInto(handle, buf, position);
  return buf;
}

/**
 * Fills `target` completely with the bytes at `position`. The common case (one read
 * returns everything) costs one promise; short reads loop.
 */
export function readInto(handle: FileHandle, target: Uint8Array, position: number): Promise<void> {
  return handle.read(target, 0, target.length, position).then(
    (n) => (n === target.length ? undefined : readRest(handle, target, position, n)),
    (err: unknown) => {
      throw fromSystemError(err, handle.path, 'read failed');
    },
  );
}

/**
 * Fills `buffers` (back to back) with the bytes at `position` with one readv.
 * @throws TRUNCATED when the file ends first.
 */
export function readvInto(handle: FileHandle, buffers: readonly Uint8Array[], position: number): Promise<void> {
  const total = buffers.reduce((n, b) => n + b.length, 0);
  return handle.readv(buffers, position).then(
    (n) => {
      if (n < total) {
        throw new DeltaDiskError('TRUNCATED', `${handle.path}: wanted ${total} bytes at offset ${position}, the file ends after ${n}`, {
          path: handle.path,
          offset: position + n,
        });
      }
    },
    (err: unknown) => {
      throw fromSystemError(err, handle.path, 'read failed');
    },
  );
}

async function readRest(handle: FileHandle, target: Uint8Array, position: number, first: number): Promise<void> {
  let done = first;
  while (done < target.length) {
    let n: number;
    try {
      n = await handle.read(target, done, target.length - done, position + done);
    } catch (err) {
      throw fromSystemError(err, handle.path, 'read failed');
    }
    if (n === 0) {
      throw new DeltaDiskError(
        'TRUNCATED',
        `${handle.path}: wanted ${target.length} bytes at offset ${position}, the file ends after ${done}`,
        { path: handle.path, offset: position + done },
      );
    }
    done += n;
  }
}

/**
 * Reads up to `length` bytes at `position`; returns fewer only at end of file.
 * For files whose length is not known in advance (descriptors, state records).
 */
export async function readUpTo(handle: FileHandle, position: number, length: number): Promise<Buffer> {
  const buf = Buffer.allocUnsafe(length);
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
  return buf.subarray(0, done);
}
