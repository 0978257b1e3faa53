/**
 * A standalone copy of one point in time of a disk: a new single-layer disk with no
 * base, or a raw image. Nothing of the source is shared, so the copy survives the
 * source's deletion. Blocks that read as zeros are not stored.
 */
import { DeltaDiskError } from '../errors.js';
import type { FileSystem } from '../io/file-system.js';
import { nodeFileSystem } from '../io/node-file-system.js';
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
    throw err;
  }
  await disk.close();
}
