/**
 * Writing into the restore target without ever writing through something the
 * restore did not create.
 *
 * Each file is written under a temporary name created exclusively (O_EXCL |
 * O_NOFOLLOW, so neither an existing file nor a planted symlink is opened), its data
 * verified chunk by chunk as it arrives (a large file written past the page cache,
 * `SequentialWriter`), made durable, given its mode and time, and
 * only then published under its name: by link() when it must not replace anything
 * (which fails if the name exists), by rename() with --overwrite (which replaces the
 * directory entry itself, never following a symlink that was there). A failure
 * leaves at most a temporary file, removed on the way out; a restore killed midway
 * leaves its temporary files, and the next restore of the same name removes them
 * (the rule of atomic-replace.ts: whoever next replaces a file removes its leftovers).
 */
import path from 'node:path';
import { DeltaDiskError, fromSystemError } from '../errors.js';
import type { Content } from '../format/manifest.js';
import { isTempNameOf, TEMP_INFIX, tempNameFor } from '../io/atomic-replace.js';
import type { FileSystem } from '../io/file-system.js';
import { SequentialWriter } from '../io/sequential-writer.js';
import { readContent } from './blob-fetch.js';
import type { ChunkIndex } from './chunk-index.js';
import type { Repository } from './repository.js';
import { noTreeOps, type TreeOps } from './tree-ops.js';

export interface TargetContext {
  readonly fs: FileSystem;
  readonly ops: TreeOps;
  readonly repo: Repository;
  readonly index: ChunkIndex;
  readonly overwrite: boolean;
  /** Directories whose entries changed and must be fsync'ed at the end. */
  readonly touched: Set<string>;
  /**
   * Per directory, the temporary names found in it when the restore first wrote
   * there (listed once, before any of this restore's own temporary files exist).
   */
  readonly leftovers: Map<string, Promise<readonly string[]>>;
  /** Every path of the backup, restored this time or not (never taken for a leftover). */
  readonly planned: ReadonlySet<string>;
  onBytes(n: number): void;
}

/** Publishes `tmp` as `final`; removes `tmp` whatever happens. */
export async function publish(t: TargetContext, tmp: string, final: string): Promise<void> {
  try {
    if (t.overwrite) {
      await t.fs.rename(tmp, final);
    } else {
      await t.fs.link(tmp, final);
      await t.fs.unlink(tmp);
    }
  } catch (err) {
    await t.fs.unlink(tmp).catch(() => undefined);
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') {
      throw new DeltaDiskError('ALREADY_EXISTS', `${final} appeared during the restore; not replacing it (pass --overwrite)`, { path: final });
    }
    throw fromSystemError(err, final, 'publishing a restored file failed');
  }
  t.touched.add(path.dirname(final));
}

/**
 * Removes what an interrupted restore left of `final`: symbolic links, and regular
 * files still owner-only (as `restoreFile` creates them), named as `tempNameFor(final)`
 * names them and not themselves files of the backup. Never a directory, never
 * through a link (a name is unlinked, not followed).
 */
export async function removeLeftovers(t: TargetContext, final: string): Promise<void> {
  const dir = path.dirname(final);
  let listed = t.leftovers.get(dir);
  if (listed === undefined) {
    listed = t.fs.readdir(dir).then(
      (names) => names.filter((n) => n.includes(TEMP_INFIX)),
      () => [],
    );
    t.leftovers.set(dir, listed);
  }
  const base = path.basename(final);
  for (const name of await listed) {
    if (!isTempNameOf(name, base)) continue;
    const p = path.join(dir, name);
    if (t.planned.has(p)) continue;
    const st = await t.fs.lstat(p).catch(() => undefined);
    if (st === undefined || !(st.isSymbolicLink || (st.isFile && (st.mode & 0o777) === 0o600))) continue;
    await t.fs.unlink(p).catch((err: unknown) => {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw fromSystemError(err, p, 'removing a temporary file an interrupted restore left failed');
    });
    t.touched.add(dir);
  }
}

/** Writes `content` as the regular file `final` (sparse where it reads zeros). */
export async function restoreFile(t: TargetContext, c: Content, final: string, mode: number, mtimeMs: number): Promise<void> {
  await removeLeftovers(t, final);
  const tmp = tempNameFor(final);
  // Owner-only until written: the file gets its own mode just before it is published
  // (where the file system keeps modes; elsewhere it keeps the default it was made with).
  const file = await SequentialWriter.create(t.fs, tmp, c.size, t.ops === noTreeOps ? undefined : 0o600).catch((err: unknown) => {
    throw fromSystemError(err, final, 'creating a restored file failed');
  });
  try {
    // Each piece is copied or written before the next is asked for (SequentialWriter).
    for await (const piece of readContent(t.repo, t.index, c, final, { transient: true })) {
      if (piece.data !== null) await file.write(piece.data, piece.offset);
      t.onBytes(piece.length);
    }
    await file.finish(c.size);
    await file.close();
    await t.ops.chmod(tmp, mode & 0o777);
    await t.ops.lutimes(tmp, mtimeMs, mtimeMs);
  } catch (err) {
    await file.close().catch(() => undefined);
    await t.fs.unlink(tmp).catch(() => undefined);
    throw fromSystemError(err, final, 'restoring a file failed');
  }
  await publish(t, tmp, final);
}

/** Creates the symbolic link `final` → `target` (never following anything). */
export async function restoreSymlink(t: TargetContext, target: string, final: string, mtimeMs: number): Promise<void> {
  await removeLeftovers(t, final);
  const tmp = tempNameFor(final);
  try {
    await t.ops.symlink(target, tmp);
    await t.ops.lutimes(tmp, mtimeMs, mtimeMs).catch(() => undefined);
  } catch (err) {
    await t.fs.unlink(tmp).catch(() => undefined);
    throw fromSystemError(err, final, 'creating a symbolic link failed');
  }
  await publish(t, tmp, final);
}

/**
 * Creates directory `p` unless it exists as a real directory; refuses a symlink or a
 * file in its place.
 */
export async function ensureDirectory(fs: FileSystem, p: string): Promise<void> {
  const st = await fs.lstat(p).catch(() => undefined);
  if (st === undefined) {
    try {
      await fs.mkdir(p, 0o700);
      return;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw fromSystemError(err, p, 'creating a directory failed');
    }
    return ensureDirectory(fs, p);
  }
  if (st.isSymbolicLink) throw new DeltaDiskError('UNSAFE_PATH', `${p} is a symbolic link in the target; not restoring through it`, { path: p });
  if (!st.isDirectory) throw new DeltaDiskError('ALREADY_EXISTS', `${p} exists and is not a directory`, { path: p });
}
