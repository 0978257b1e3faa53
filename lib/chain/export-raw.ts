/**
 * Exporting a point in time of a disk as a raw image.
 *
 * `rawChunks` yields the bytes in order, in chunks of at most 4 MiB, reading each
 * chunk's extents concurrently. `exportRawFile` writes a file atomically (temp name,
 * fsync, rename) and leaves holes where the disk reads zeros, so a mostly empty
 * disk exports to a mostly sparse file. A large export bypasses the page cache
 * (`SequentialWriter`): the image is written once and not read back.
 */
import path from 'node:path';
import { DeltaDiskError, fromSystemError } from '../errors.js';
import { tempNameFor } from '../io/atomic-replace.js';
import type { FileSystem } from '../io/file-system.js';
import { nodeFileSystem } from '../io/node-file-system.js';
import { SequentialWriter } from '../io/sequential-writer.js';
import type { DiskReader } from './disk-reader.js';
import { isAllZero } from './write-plan.js';

export const EXPORT_CHUNK = 4 * 1024 * 1024;

export async function* rawChunks(reader: DiskReader, chunk = EXPORT_CHUNK): AsyncGenerator<Buffer> {
  for (let pos = 0; pos < reader.virtualSize; pos += chunk) {
    yield await reader.read(pos, Math.min(chunk, reader.virtualSize - pos));
  }
}

/**
 * Writes the reader's content to `target` as a raw file with holes where whole
 * blocks read as zeros.
 * @param onProgress called with the bytes of each chunk done.
 * @throws ALREADY_EXISTS unless `overwrite`.
 */
export async function exportRawFile(
  reader: DiskReader,
  target: string,
  options: { overwrite?: boolean; fs?: FileSystem; onProgress?: (bytes: number) => void } = {},
): Promise<void> {
  const fs = options.fs ?? nodeFileSystem;
  const abs = path.resolve(target);
  if (!options.overwrite && (await fs.lstat(abs).then(() => true, () => false))) {
    throw new DeltaDiskError('ALREADY_EXISTS', `${abs} exists; pass overwrite to replace it`, { path: abs });
  }
  const tmp = tempNameFor(abs);
  const file = await SequentialWriter.create(fs, tmp, reader.virtualSize).catch((err: unknown) => {
    throw fromSystemError(err, tmp, 'creating export file failed');
  });
  try {
    let pos = 0;
    for await (const data of rawChunks(reader)) {
      // Holes wherever a whole block reads as zeros.
      const bs = reader.blockSize;
      let run = -1;
      for (let at = 0; ; at = Math.min(at + bs, data.length)) {
        const end = at === data.length;
        const zero = end || isAllZero(data.subarray(at, Math.min(at + bs, data.length)));
        if (!zero && run < 0) run = at;
        if (zero && run >= 0) {
          await file.write(data.subarray(run, at), pos + run);
          run = -1;
        }
        if (end) break;
      }
      pos += data.length;
      options.onProgress?.(data.length);
    }
    await file.finish(reader.virtualSize);
    await file.close();
    await fs.rename(tmp, abs);
    await fs.syncDir(path.dirname(abs));
  } catch (err) {
    await file.close().catch(() => undefined);
    await fs.unlink(tmp).catch(() => undefined);
    throw fromSystemError(err, abs, 'export failed');
  }
}
