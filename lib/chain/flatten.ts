/**
 * A standalone copy of one point in time of a disk: a new single-layer disk with no
 * base, or a raw image. Nothing of the source is shared, so the copy survives the
 * source's deletion. Blocks that read as zeros are not stored. A copy that fails (or
 * is interrupted through `onProgress`) leaves nothing: a raw image's temporary file
 * is removed, and so is a new disk, which would otherwise read as a whole, clean
 * disk holding part of the source.
 */
import path from 'node:path';
import { DeltaDiskError } from '../errors.js';
import type { FileSystem } from '../io/file-system.js';
import { nodeFileSystem } from '../io/node-file-system.js';
import { readDescriptor } from './descriptor-file.js';
import { Disk } from './disk.js';
import type { DiskReader } from './disk-reader.js';
import { EXPORT_CHUNK, exportRawFile, rawChunks } from './export-raw.js';
import { isAllZero } from './write-plan.js';

export interface FlattenOptions {
  /** 'chain' (a new disk descriptor) or 'raw'. */
  readonly format: 'chain' | 'raw';
  /** Block size of a new chain; default the source's. */
  readonly blockSize?: number;
  readonly dedup?: boolean;
  readonly overwrite?: boolean;
  readonly fs?: FileSystem;
  readonly onProgress?: (bytes: number) => void;
}

export async function flatten(source: DiskReader, target: string, options: FlattenOptions): Promise<void> {
  const fs = options.fs ?? nodeFileSystem;
  if (options.format === 'raw') {
    await exportRawFile(source, target, {
      fs,
      ...(options.overwrite !== undefined ? { overwrite: options.overwrite } : {}),
      ...(options.onProgress ? { onProgress: options.onProgress } : {}),
    });
    return;
  }
  if (options.format !== 'chain') throw new DeltaDiskError('INVALID_ARGUMENT', `unknown format ${String(options.format)}`);
  const disk = await Disk.create(target, {
    fs,
    size: source.virtualSize,
    blockSize: options.blockSize ?? source.blockSize,
    ...(options.dedup !== undefined ? { dedup: options.dedup } : {}),
  });
  try {
    let pos = 0;
    for await (const chunk of rawChunks(source, EXPORT_CHUNK)) {
      if (!isAllZero(chunk)) await disk.write(pos, chunk);
      pos += chunk.length;
      options.onProgress?.(chunk.length);
    }
    await disk.flush();
  } catch (err) {
    await disk.close().catch(() => undefined);
    await removeDisk(fs, target).catch(() => undefined);
    throw err;
  }
  await disk.close();
}

/**
 * Removes the disk `flatten` created at `descriptor`: its deltas first, so that a
 * crash midway leaves a descriptor naming a missing delta, which no open accepts;
 * never a partial copy that opens (or that a repair would rebuild) as a whole disk.
 */
async function removeDisk(fs: FileSystem, descriptor: string): Promise<void> {
  const d = await readDescriptor(fs, descriptor);
  for (const l of d.layers) await fs.unlink(path.join(path.dirname(descriptor), l.file)).catch(() => undefined);
  await fs.syncDir(path.dirname(descriptor)).catch(() => undefined);
  await fs.unlink(descriptor);
  await fs.syncDir(path.dirname(descriptor)).catch(() => undefined);
}
