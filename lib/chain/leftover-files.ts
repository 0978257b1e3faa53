/**
 * Removing files that no committed descriptor names, on a writable open.
 *
 * An interrupted snapshot, revert, merge or compaction leaves such files behind: a
 * temporary descriptor, or a delta that was created but never committed, or one that
 * a committed change dropped but had not yet unlinked. A delta is removed only when
 * it is ours for certain: its header names this disk, or it has no intact header and
 * carries a number no committed descriptor ever handed out (its creation was cut
 * short). Anything else, however it is named, is left alone (and `check` lists it).
 *
 * A create cut short before its descriptor existed leaves the first delta (and
 * perhaps a temporary descriptor) with no descriptor at all. `removeInterruptedCreate`
 * recognises exactly that leftover, which holds no data by construction, so a
 * retried create can proceed; a lost descriptor's deltas are never mistaken for it.
 */
import path from 'node:path';
import { DeltaDiskError, fromSystemError } from '../errors.js';
import { decodeDeltaHeader, type DeltaHeader } from '../format/delta-header.js';
import type { Descriptor } from '../format/descriptor.js';
import { HEADER_SLOT_SIZE, LOG_START } from '../format/limits.js';
import { TEMP_INFIX } from '../io/atomic-replace.js';
import type { FileSystem } from '../io/file-system.js';
import { readUpTo } from '../io/positional.js';
import type { DiskPaths } from './descriptor-file.js';

export async function removeLeftoverFiles(fs: FileSystem, paths: DiskPaths, d: Descriptor): Promise<void> {
  const names = await fs.readdir(paths.dir).catch((err: unknown) => {
    throw fromSystemError(err, paths.dir, 'listing disk directory failed');
  });
  const known = new Set(d.layers.map((l) => l.file));
  let removed = false;
  for (const name of names) {
    const p = path.join(paths.dir, name);
    if (isTempFile(paths, name)) {
      await fs.unlink(p).catch(() => undefined);
      removed = true;
      continue;
    }
    const n = paths.layerNumber(name);
    if (n === undefined || known.has(name)) continue;
    // Only regular files are ours to judge: opening a FIFO would block for ever, a
    // symlink leads elsewhere, and neither is anything we created.
    if ((await fs.lstat(p).catch(() => undefined))?.isFile !== true) continue;
    const owner = await headerDiskId(fs, p);
    if (owner === d.diskId || (owner === undefined && n >= d.nextLayer)) {
      await fs.unlink(p).catch(() => undefined);
      removed = true;
    }
  }
  if (removed) await fs.syncDir(paths.dir).catch(() => undefined);
}

/**
 * Before a create: when no descriptor exists but files of an interrupted create of
 * the same disk do, removes them. That leftover is recognised exactly: the first
 * delta is the only delta of this name, it holds no log (at most the two header
 * slots), and its header, if one survived, is the one a create writes (a root layer,
 * unsealed, no snapshot, an empty log). Temporary descriptors go with it.
 * Call it holding the writer lock.
 * @throws ALREADY_EXISTS when the descriptor exists, or deltas of this name do that
 *   are not such a leftover (a lost descriptor: `check --repair` rebuilds it).
 */
export async function removeInterruptedCreate(fs: FileSystem, paths: DiskPaths): Promise<void> {
  if (await fs.lstat(paths.descriptor).then(() => true, () => false)) {
    throw new DeltaDiskError('ALREADY_EXISTS', `${paths.descriptor} already exists`, { path: paths.descriptor });
  }
  const names = await fs.readdir(paths.dir).catch((err: unknown) => {
    throw fromSystemError(err, paths.dir, 'listing disk directory failed');
  });
  const deltas = names.filter((n) => paths.layerNumber(n) !== undefined);
  const temps = names.filter((n) => isTempFile(paths, n));
  if (deltas.length > 0) {
    const first = paths.layerFile(1);
    if (deltas.length > 1 || deltas[0] !== first || !(await isEmptyFirstDelta(fs, path.join(paths.dir, first)))) {
      throw new DeltaDiskError(
        'ALREADY_EXISTS',
        `${paths.dir} holds delta files of a disk named ${path.basename(paths.descriptor)} (${deltas.slice(0, 3).join(', ')}${deltas.length > 3 ? ', …' : ''}) but no descriptor; \`deltadisk check --repair\` rebuilds it`,
        { path: path.join(paths.dir, deltas[0]!) },
      );
    }
  }
  const doomed = [...temps, ...deltas];
  if (doomed.length === 0) return;
  for (const name of doomed) {
    const p = path.join(paths.dir, name);
    await fs.unlink(p).catch((err: unknown) => {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw fromSystemError(err, p, 'removing the leftover of an interrupted create failed');
    });
  }
  await fs.syncDir(paths.dir).catch((err: unknown) => {
    throw fromSystemError(err, paths.dir, 'syncing directory failed');
  });
}

/** True for a regular file no longer than the header slots whose header, if any, is a fresh root's. */
async function isEmptyFirstDelta(fs: FileSystem, file: string): Promise<boolean> {
  const st = await fs.lstat(file).catch(() => undefined);
  if (st === undefined || !st.isFile || st.size > LOG_START) return false;
  const read = await readHeaders(fs, file);
  if (read === undefined || read.foreign) return false;
  const { headers } = read;
  const newest = headers.reduce<DeltaHeader | undefined>((a, h) => (a === undefined || h.generation > a.generation ? h : a), undefined);
  if (newest === undefined) return true; // its creation was cut before its header was durable
  return (
    headers.every((h) => h.layerId === newest.layerId) &&
    newest.generation === 1 &&
    newest.parentId === null &&
    newest.parentFile === null &&
    !newest.sealed &&
    newest.snapshot === null &&
    newest.logEnd === LOG_START &&
    newest.lastSegment === 0 &&
    newest.nextSeq === 1
  );
}

function isTempFile(paths: DiskPaths, name: string): boolean {
  const descName = path.basename(paths.descriptor);
  return name.startsWith(`${descName}${TEMP_INFIX}`) || name.startsWith(`${descName}.op${TEMP_INFIX}`);
}

/**
 * The intact header slots of a delta, and whether a slot is well-formed but not
 * understood (another version, impossible content); undefined when it cannot be read
 * or is not a regular file.
 */
export async function readHeaders(fs: FileSystem, file: string): Promise<{ headers: DeltaHeader[]; foreign: boolean } | undefined> {
  try {
    // Never opened unless a regular file (not followed, not a FIFO, whose open blocks).
    if (!(await fs.lstat(file)).isFile) return undefined;
    const h = await fs.open(file, 'read');
    try {
      const bytes = await readUpTo(h, 0, 2 * HEADER_SLOT_SIZE);
      const headers: DeltaHeader[] = [];
      let foreign = false;
      for (let at = 0; at < bytes.length; at += HEADER_SLOT_SIZE) {
        try {
          const header = decodeDeltaHeader(bytes.subarray(at, at + HEADER_SLOT_SIZE));
          if (header !== undefined) headers.push(header);
        } catch {
          foreign = true;
        }
      }
      return { headers, foreign };
    } finally {
      await h.close().catch(() => undefined);
    }
  } catch {
    return undefined;
  }
}

/** The disk id in a delta's header, or undefined when it has no intact header. */
async function headerDiskId(fs: FileSystem, file: string): Promise<string | undefined> {
  return (await readHeaders(fs, file))?.headers[0]?.diskId;
}
