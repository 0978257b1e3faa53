/**
 * The file-system operations on metadata that the FileSystem interface leaves out:
 * symbolic links, permission bits and times. They carry no data whose loss a crash
 * could hide (a restored file is published only after its data is durable), so they
 * go straight to node:fs; a FileSystem implementation may provide its own by having
 * methods of the same names.
 */
import nodeFs from 'node:fs';
import type { FileSystem } from '../io/file-system.js';

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

/** The tree operations of `fs` if it has them, else node's. */
export function treeOpsOf(fs: FileSystem): TreeOps {
  const o = fs as unknown as Partial<TreeOps>;
  return typeof o.readlink === 'function' && typeof o.symlink === 'function' && typeof o.chmod === 'function' && typeof o.lutimes === 'function'
    ? (o as TreeOps)
    : nodeTreeOps;
}

export function readLink(fs: FileSystem, p: string): Promise<string> {
  return treeOpsOf(fs).readlink(p);
}
