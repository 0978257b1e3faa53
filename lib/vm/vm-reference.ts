/**
 * Resolves a file name found in VM metadata (a vmx `fileName`, a VMDK extent or
 * `parentFileNameHint`, a vmsd entry) without letting it reach outside the VM.
 *
 * A name is taken relative to the directory of the file that names it (as VMware
 * does) and must then lie inside the VM directory or inside a path the user allowed
 * explicitly. The outcome is a value, not an exception, because each outcome is a
 * different finding for the inventory:
 *  - `outside`: lexically outside; decided without touching the file system, so the
 *    answer is the same whether or not the file exists (no probing of the host);
 *  - `unsafe`: refused by lib/io/path-guard (a symlink leading out, not a regular
 *    file, a protocol-like name, control characters);
 *  - `missing`: allowed, but absent;
 *  - `ok`: the real path.
 */
import path from 'node:path';
import { DeltaDiskError, isDeltaDiskError } from '../errors.js';
import type { FileSystem } from '../io/file-system.js';
import { resolveReference } from '../io/path-guard.js';

export type Resolved =
  | { readonly kind: 'ok'; readonly path: string; readonly inside: boolean }
  | { readonly kind: 'outside'; readonly path: string }
  | { readonly kind: 'missing'; readonly path: string }
  | { readonly kind: 'unsafe'; readonly path: string; readonly error: DeltaDiskError };

export function isInside(parent: string, child: string): boolean {
  const rel = path.relative(parent, child);
  return rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel));
}

export interface VmPathScope {
  readonly fs: FileSystem;
  /** Real path of the VM directory. */
  readonly vmDir: string;
  readonly allowPaths: readonly string[];
}

export async function resolveVmReference(scope: VmPathScope, baseDir: string, ref: string, what: string): Promise<Resolved> {
  // eslint-disable-next-line no-control-regex
  if (ref.length === 0 || Buffer.byteLength(ref) > 4096 || /[\x00-\x1f\x7f]/.test(ref) || /^[a-z][a-z0-9+.-]*:/i.test(ref)) {
    const error = new DeltaDiskError('UNSAFE_PATH', `${what} ${JSON.stringify(ref)} is not an acceptable file name`);
    return { kind: 'unsafe', path: ref, error };
  }
  const lexical = path.resolve(baseDir, ref);
  const allowed = scope.allowPaths.map((p) => path.resolve(p));
  if (!isInside(scope.vmDir, lexical) && !allowed.some((a) => isInside(a, lexical))) return { kind: 'outside', path: lexical };
  try {
    const real = await resolveReference(scope.fs, scope.vmDir, lexical, what, allowed);
    return { kind: 'ok', path: real, inside: isInside(scope.vmDir, real) };
  } catch (err) {
    if (isDeltaDiskError(err, 'NOT_FOUND')) return { kind: 'missing', path: lexical };
    if (isDeltaDiskError(err, 'UNSAFE_PATH')) return { kind: 'unsafe', path: lexical, error: err };
    throw err;
  }
}

/** The name a file gets in the set: relative to the VM directory, or absolute outside it. */
export function nameInVm(vmDir: string, p: string): string {
  return isInside(vmDir, p) ? path.relative(vmDir, p) : p;
}
