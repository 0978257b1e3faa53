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

/** Fills `target` completely with the bytes at `position`. */
export async function readInto(handle: FileHandle, target: Uint8Array, position: number): Promise<void> {
  let done = 0;
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
