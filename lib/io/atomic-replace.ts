/**
 * Whole-file replacement that survives power loss at any instant.
 *
 * The rule (DESIGN, crash safety 3): write a temporary file in the same directory,
 * fsync it, rename it over the target, fsync the directory. After a crash the
 * target holds either the complete old content or the complete new content, never
 * a mix; a leftover temporary file is recognisable by its `.tmp-` infix and is
 * removed by whoever next replaces the same file.
 *
 * A cache (whatever can be rebuilt, and is checked when read) may skip the syncs:
 * readers then still see the old or the new content whole, but a crash may leave
 * neither.
 */
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { DeltaDiskError, fromSystemError } from '../errors.js';
import type { FileSystem } from './file-system.js';

export const TEMP_INFIX = '.tmp-';

export function tempNameFor(target: string): string {
  return `${target}${TEMP_INFIX}${randomBytes(6).toString('hex')}`;
}

/** Whether the file name `name` is one `tempNameFor` gives for the file name `base`. */
export function isTempNameOf(name: string, base: string): boolean {
  return name.length === base.length + TEMP_INFIX.length + 12 && name.startsWith(`${base}${TEMP_INFIX}`) && /^[0-9a-f]{12}$/.test(name.slice(-12));
}

export async function atomicReplace(fs: FileSystem, target: string, data: Uint8Array | readonly Uint8Array[], options: { readonly durable?: boolean } = {}): Promise<void> {
  const durable = options.durable ?? true;
  const tmp = tempNameFor(target);
  let created = false;
  try {
    const handle = await fs.open(tmp, 'createExclusive');
    created = true;
    try {
      await handle.write(data instanceof Uint8Array ? [data] : data, 0);
      if (durable) await handle.datasync();
    } finally {
      await handle.close();
    }
    await fs.rename(tmp, target);
    created = false;
    if (durable) await fs.syncDir(path.dirname(target));
  } catch (err) {
    if (created) await fs.unlink(tmp).catch(() => undefined);
    throw fromSystemError(err, target, 'replacing file failed');
  }
}

/** Writes a new file that must not exist yet, durably (file and directory entry). */
export async function createDurable(fs: FileSystem, target: string, data: Uint8Array): Promise<void> {
  const tmp = tempNameFor(target);
  let created = false;
  try {
    const handle = await fs.open(tmp, 'createExclusive');
    created = true;
    try {
      await handle.write([data], 0);
      await handle.datasync();
    } finally {
      await handle.close();
    }
    // link() refuses to replace an existing target, unlike rename().
    await fs.link(tmp, target);
    await fs.unlink(tmp);
    created = false;
    await fs.syncDir(path.dirname(target));
  } catch (err) {
    if (created) await fs.unlink(tmp).catch(() => undefined);
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') {
      throw new DeltaDiskError('ALREADY_EXISTS', `${target} already exists`, { path: target, cause: err });
    }
    throw fromSystemError(err, target, 'creating file failed');
  }
}
