/**
 * Removing files that no committed descriptor names, on a writable open.
 *
 * An interrupted snapshot, revert, merge or compaction leaves such files behind: a
 * temporary descriptor, or a delta that was created but never committed, or one that
 * a committed change dropped but had not yet unlinked. A delta is removed only when
 * it is ours for certain: its header names this disk, or it has no intact header and
 * carries a number no committed descriptor ever handed out (its creation was cut
 * short). Anything else, however it is named, is left alone (and `check` lists it).
 */
import path from 'node:path';
import { fromSystemError } from '../errors.js';
import { decodeDeltaHeader } from '../format/delta-header.js';
import type { Descriptor } from '../format/descriptor.js';
import { HEADER_SLOT_SIZE } from '../format/limits.js';
import { TEMP_INFIX } from '../io/atomic-replace.js';
import type { FileSystem } from '../io/file-system.js';
import { readUpTo } from '../io/positional.js';
import type { DiskPaths } from './descriptor-file.js';

export async function removeLeftoverFiles(fs: FileSystem, paths: DiskPaths, d: Descriptor): Promise<void> {
  const names = await fs.readdir(paths.dir).catch((err: unknown) => {
    throw fromSystemError(err, paths.dir, 'listing disk directory failed');
  });
  const known = new Set(d.layers.map((l) => l.file));
  const descName = path.basename(paths.descriptor);
  let removed = false;
  for (const name of names) {
    const p = path.join(paths.dir, name);
    if (name.startsWith(`${descName}${TEMP_INFIX}`) || name.startsWith(`${descName}.op${TEMP_INFIX}`)) {
      await fs.unlink(p).catch(() => undefined);
      removed = true;
      continue;
    }
    const n = paths.layerNumber(name);
    if (n === undefined || known.has(name)) continue;
    const owner = await headerDiskId(fs, p);
    if (owner === d.diskId || (owner === undefined && n >= d.nextLayer)) {
      await fs.unlink(p).catch(() => undefined);
      removed = true;
    }
  }
  if (removed) await fs.syncDir(paths.dir).catch(() => undefined);
}

/** The disk id in a delta's header, or undefined when it has no intact header. */
async function headerDiskId(fs: FileSystem, file: string): Promise<string | undefined> {
  try {
    const h = await fs.open(file, 'read');
    try {
      const bytes = await readUpTo(h, 0, 2 * HEADER_SLOT_SIZE);
      const read = (slot: Buffer): string | undefined => {
        try {
          return decodeDeltaHeader(slot)?.diskId;
        } catch {
          return undefined;
        }
      };
      return read(bytes.subarray(0, HEADER_SLOT_SIZE)) ?? (bytes.length >= 2 * HEADER_SLOT_SIZE ? read(bytes.subarray(HEADER_SLOT_SIZE)) : undefined);
    } finally {
      await h.close();
    }
  } catch {
    return undefined;
  }
}
