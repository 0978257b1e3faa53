/**
 * The file-system operations on metadata that the FileSystem interface leaves out:
 * symbolic links, permission bits and times. They carry no data whose loss a crash
 * could hide (a restored file is published only after its data is durable), so they
 * go straight to node:fs; a FileSystem implementation may provide its own by having
 * methods of the same names.
 */
import nodeFs from 'node:fs';
import { DeltaDiskError } from '../errors.js';
import type { FileSystem } from '../io/file-system.js';
import { NodeFileSystem } from '../io/node-file-system.js';

export interface TreeOps {
  readlink(p: string): Promise<string>;
  symlink(target: string, p: string): Promise<void>;
  chmod(p: string, mode: number): Promise<void>;
  /** Sets the times of `p` itself (a symbolic link is not followed). */
  lutimes(p: string, atimeMs: number, mtimeMs: number): Promise<void>;
}

export const nodeTreeOps: TreeOps = {
  readlink: (p) => nodeFs.promises.readlink(p),
  symlink: (target, p) => nodeFs.promises.symlink(target, p),
  chmod: (p, mode) => nodeFs.promises.chmod(p, mode),
  lutimes: (p, a, m) => nodeFs.promises.lutimes(p, a / 1000, m / 1000),
};

/**
 * For file systems that model neither links nor modes (the in-memory one): modes and
 * times are not kept, links cannot be made.
 */
export const noTreeOps: TreeOps = {
  readlink: () => Promise.reject(new DeltaDiskError('UNSUPPORTED', 'this file system has no symbolic links')),
  symlink: () => Promise.reject(new DeltaDiskError('UNSUPPORTED', 'this file system has no symbolic links')),
  chmod: () => Promise.resolve(),
  lutimes: () => Promise.resolve(),
};

/** The tree operations of `fs` if it has them, node's for the real file system, else none. */
export function treeOpsOf(fs: FileSystem): TreeOps {
  const o = fs as unknown as Partial<TreeOps>;
  if (typeof o.readlink === 'function' && typeof o.symlink === 'function' && typeof o.chmod === 'function' && typeof o.lutimes === 'function') return o as TreeOps;
  return fs instanceof NodeFileSystem ? nodeTreeOps : noTreeOps;
}

export function readLink(fs: FileSystem, p: string): Promise<string> {
  return treeOpsOf(fs).readlink(p);
}
