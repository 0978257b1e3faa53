/**
 * Keeps file names found inside on-disk metadata from reaching outside their directory.
 *
 * A descriptor, a delta header or a VM file is data, possibly hostile: a name in it
 * must not make us read /etc/shadow or a block device (the CVE-2022-47951 and
 * CVE-2024-4467 class). Names are resolved here and nowhere else:
 *  - a *member* name (a delta file, a pack) must be a single plain path component;
 *  - a *reference* (a base image) may be a relative path, but must resolve, after
 *    following symlinks, inside the directory, unless the caller names it (or a
 *    directory holding it) in `allowPaths`: paths the user passed explicitly.
 * Either way the result must be a regular file. Refusals are UNSAFE_PATH and do not
 * depend on whether the named file exists, so they cannot be used to probe the host.
 */
import path from 'node:path';
import { DeltaDiskError, fromSystemError } from '../errors.js';
import type { FileSystem } from './file-system.js';

const MAX_NAME_BYTES = 255;
const MAX_PATH_BYTES = 4096;

/** True for a name that is one plain path component: no separators, NUL, `.` or `..`. */
export function isPlainName(name: string): boolean {
  return (
    name.length > 0 &&
    Buffer.byteLength(name) <= MAX_NAME_BYTES &&
    name !== '.' &&
    name !== '..' &&
    !/[/\\\0]/.test(name) &&
    // eslint-disable-next-line no-control-regex
    !/[\x00-\x1f\x7f]/.test(name)
  );
}

/** Checks a member name and joins it to `dir`. */
export function memberPath(dir: string, name: string, what: string): string {
  if (!isPlainName(name)) {
    throw new DeltaDiskError('UNSAFE_PATH', `${what} ${JSON.stringify(name)} is not a plain file name`, {
      path: path.join(dir, '<invalid>'),
    });
  }
  return path.join(dir, name);
}

function isInside(parent: string, child: string): boolean {
  const rel = path.relative(parent, child);
  return rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel));
}

/**
 * Resolves a file reference found in metadata stored in `dir`.
 *
 * @param allowPaths files or directories the user named explicitly; a reference
 *   resolving to one of them, or below one of them, is allowed outside `dir`.
 * @throws UNSAFE_PATH for anything that escapes or is not a regular file,
 *   NOT_FOUND when an allowed reference does not exist.
 */
export async function resolveReference(
  fs: FileSystem,
  dir: string,
  reference: string,
  what: string,
  allowPaths: readonly string[] = [],
): Promise<string> {
  if (
    reference.length === 0 ||
    Buffer.byteLength(reference) > MAX_PATH_BYTES ||
    // eslint-disable-next-line no-control-regex
    /[\x00-\x1f\x7f]/.test(reference) ||
    /^[a-z][a-z0-9+.-]*:/i.test(reference) // json:, nbd:, file: … are names, never protocols
  ) {
    throw new DeltaDiskError('UNSAFE_PATH', `${what} ${JSON.stringify(reference)} is not an acceptable file name`);
  }
  const lexical = path.resolve(dir, reference);
  const allowed = allowPaths.map((p) => path.resolve(p));
  const lexicallyAllowed = isInside(dir, lexical) || allowed.some((a) => isInside(a, lexical));
  if (!lexicallyAllowed) {
    throw new DeltaDiskError(
      'UNSAFE_PATH',
      `${what} ${JSON.stringify(reference)} lies outside ${dir}; pass it explicitly to trust it`,
      { path: lexical },
    );
  }
  const realDir = await fs.realpath(dir).catch(() => dir);
  const realAllowed = await Promise.all(allowed.map((a) => fs.realpath(a).catch(() => a)));
  const trusted = (p: string): boolean => isInside(realDir, p) || realAllowed.some((a) => isInside(a, p));
  // One answer for every way a symbolic link can lead astray (outside, to a file that
  // exists or not, in a loop), so that what lies behind it cannot be observed.
  const escapes = (): DeltaDiskError =>
    new DeltaDiskError(
      'UNSAFE_PATH',
      `${what} ${JSON.stringify(reference)} goes through a symbolic link that does not lead to a file inside ${dir}; pass it explicitly to trust it`,
      { path: lexical },
    );
  let real: string;
  try {
    real = await fs.realpath(lexical);
  } catch (err) {
    const link = await fs.lstat(lexical).catch(() => undefined);
    if (link?.isSymbolicLink) throw escapes();
    // A missing name below a symlinked directory: NOT_FOUND only where we may look
    // (a path the user named is theirs to look at).
    if (!allowed.some((a) => isInside(a, lexical))) {
      const ancestor = await deepestRealAncestor(fs, lexical);
      if (ancestor === undefined || !trusted(ancestor)) throw escapes();
    }
    throw fromSystemError(err, lexical, `${what} cannot be opened`);
  }
  if (!trusted(real)) throw escapes();
  const st = await fs.stat(real).catch((err: unknown) => {
    throw fromSystemError(err, real, `${what} cannot be opened`);
  });
  if (!st.isFile) {
    throw new DeltaDiskError('UNSAFE_PATH', `${what} ${JSON.stringify(reference)} is not a regular file`, {
      path: real,
    });
  }
  return real;
}

/** The real path of the nearest existing directory above `p`, if any. */
async function deepestRealAncestor(fs: FileSystem, p: string): Promise<string | undefined> {
  let cur = path.dirname(p);
  for (;;) {
    const real = await fs.realpath(cur).catch(() => undefined);
    if (real !== undefined) return real;
    const up = path.dirname(cur);
    if (up === cur) return undefined;
    cur = up;
  }
}
