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
 * The one refusal for a symlink that does not lead to an acceptable file, whether
 * its target exists (outside) or not (dangling): two different answers would tell
 * whoever wrote the metadata whether a host path exists.
 */
function symlinkRefusal(what: string, reference: string, dir: string, lexical: string): DeltaDiskError {
  return new DeltaDiskError(
    'UNSAFE_PATH',
    `${what} ${JSON.stringify(reference)} is a symbolic link that does not lead to a file inside ${dir}; pass its target explicitly to trust it`,
    { path: lexical },
  );
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
  let real: string;
  try {
    real = await fs.realpath(lexical);
  } catch (err) {
    // A dangling symlink gets the same answer as one leading outside: whether its
    // target exists must not be observable.
    const link = await fs.lstat(lexical).catch(() => undefined);
    if (link?.isSymbolicLink) throw symlinkRefusal(what, reference, dir, lexical);
    throw fromSystemError(err, lexical, `${what} cannot be opened`);
  }
  const realDir = await fs.realpath(dir).catch(() => dir);
  const realAllowed = await Promise.all(allowed.map((a) => fs.realpath(a).catch(() => a)));
  if (!isInside(realDir, real) && !realAllowed.some((a) => isInside(a, real))) {
    throw symlinkRefusal(what, reference, dir, lexical);
  }
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
