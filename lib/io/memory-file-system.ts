/**
 * A file system held in memory, for model-based tests and for users' own tests.
 *
 * It implements the same contract as the real one (errno-style errors, exclusive
 * create, hard links sharing an inode, rename replacing its target) so the chain
 * and repository code cannot tell the difference. It does not simulate crashes:
 * everything is "durable" at once. Symbolic links are not supported. Direct opens
 * are granted, and their transfers held to the kernel's alignment rules (EINVAL),
 * so code that writes directly is tested against them.
 */
import path from 'node:path';
import { isDirectTransfer } from './aligned-buffer.js';
import type { FileHandle, FileStat, FileSystem, OpenMode, OpenOptions } from './file-system.js';

interface Inode {
  readonly ino: number;
  data: Uint8Array;
  size: number;
  nlink: number;
  mtimeMs: number;
}

interface Dir {
  readonly ino: number;
  readonly entries: Map<string, Inode | Dir>;
  mtimeMs: number;
}

function isDir(n: Inode | Dir): n is Dir {
  return 'entries' in n;
}

/** A Node-style errno error (for in-memory file systems, here and in tests). */
export function errno(code: string, syscall: string, p: string): NodeJS.ErrnoException {
  const e = new Error(`${code}: ${syscall} '${p}'`) as NodeJS.ErrnoException;
  e.code = code;
  e.syscall = syscall;
  e.path = p;
  return e;
}

class MemoryHandle implements FileHandle {
  readonly path: string;
  readonly direct: boolean;
  readonly #inode: Inode;
  readonly #writable: boolean;
  #closed = false;

  constructor(p: string, inode: Inode, writable: boolean, direct: boolean) {
    this.path = p;
    this.#inode = inode;
    this.#writable = writable;
    this.direct = direct;
  }

  #check(write: boolean): void {
    if (this.#closed) throw errno('EBADF', write ? 'write' : 'read', this.path);
    if (write && !this.#writable) throw errno('EBADF', 'write', this.path);
  }

  async read(buffer: Uint8Array, offset: number, length: number, position: number): Promise<number> {
    this.#check(false);
    if (this.direct && !isDirectTransfer([buffer.subarray(offset, offset + length)], position)) throw errno('EINVAL', 'read', this.path);
    const n = Math.max(0, Math.min(length, this.#inode.size - position));
    if (n > 0) buffer.set(this.#inode.data.subarray(position, position + n), offset);
    return n;
  }

  async readv(buffers: readonly Uint8Array[], position: number): Promise<number> {
    let done = 0;
    for (const b of buffers) {
      const n = await this.read(b, 0, b.length, position + done);
      done += n;
      if (n < b.length) break;
    }
    return done;
  }

  async write(buffers: readonly Uint8Array[], position: number): Promise<void> {
    this.#check(true);
    if (this.direct && !isDirectTransfer(buffers, position)) throw errno('EINVAL', 'write', this.path);
    let pos = position;
    for (const b of buffers) {
      writeAt(this.#inode, b, pos);
      pos += b.length;
    }
    this.#inode.mtimeMs = Date.now();
  }

  async datasync(): Promise<void> {
    this.#check(false);
  }

  async truncate(length: number): Promise<void> {
    this.#check(true);
    truncateTo(this.#inode, length);
  }

  async stat(): Promise<FileStat> {
    this.#check(false);
    return fileStat(this.#inode);
  }

  async close(): Promise<void> {
    this.#closed = true;
  }
}

export function writeAt(inode: { data: Uint8Array; size: number }, b: Uint8Array, pos: number): void {
  const end = pos + b.length;
  if (end > inode.data.length) {
    const grown = new Uint8Array(Math.max(end, inode.data.length * 2, 4096));
    grown.set(inode.data.subarray(0, inode.size));
    inode.data = grown;
  }
  if (pos > inode.size) inode.data.fill(0, inode.size, pos);
  inode.data.set(b, pos);
  inode.size = Math.max(inode.size, end);
}

export function truncateTo(inode: { data: Uint8Array; size: number }, length: number): void {
  if (length > inode.data.length) {
    const grown = new Uint8Array(length);
    grown.set(inode.data.subarray(0, inode.size));
    inode.data = grown;
  } else if (length > inode.size) {
    inode.data.fill(0, inode.size, length);
  }
  inode.size = length;
}

function fileStat(n: Inode): FileStat {
  return {
    size: n.size,
    mode: 0o100644,
    mtimeMs: n.mtimeMs,
    ino: n.ino,
    dev: 1,
    nlink: n.nlink,
    isFile: true,
    isDirectory: false,
    isSymbolicLink: false,
  };
}

function dirStat(d: Dir): FileStat {
  return {
    size: 4096,
    mode: 0o040755,
    mtimeMs: d.mtimeMs,
    ino: d.ino,
    dev: 1,
    nlink: 2,
    isFile: false,
    isDirectory: true,
    isSymbolicLink: false,
  };
}

export class MemoryFileSystem implements FileSystem {
  #nextIno = 2;
  readonly #root: Dir = { ino: 1, entries: new Map(), mtimeMs: Date.now() };

  #walk(p: string): { parent: Dir; name: string; node: Inode | Dir | undefined } {
    const abs = path.resolve(p);
    const parts = abs.split('/').filter((s) => s.length > 0);
    if (parts.length === 0) return { parent: this.#root, name: '', node: this.#root };
    let dir = this.#root;
    for (let i = 0; i < parts.length - 1; i++) {
      const next = dir.entries.get(parts[i]!);
      if (next === undefined) throw errno('ENOENT', 'walk', p);
      if (!isDir(next)) throw errno('ENOTDIR', 'walk', p);
      dir = next;
    }
    const name = parts[parts.length - 1]!;
    return { parent: dir, name, node: dir.entries.get(name) };
  }

  async open(p: string, mode: OpenMode, options: OpenOptions = {}): Promise<FileHandle> {
    const direct = options.direct === true;
    const { parent, name, node } = this.#walk(p);
    if (mode === 'createExclusive') {
      if (node !== undefined) throw errno('EEXIST', 'open', p);
      const inode: Inode = { ino: this.#nextIno++, data: new Uint8Array(0), size: 0, nlink: 1, mtimeMs: Date.now() };
      parent.entries.set(name, inode);
      return new MemoryHandle(path.resolve(p), inode, true, direct);
    }
    if (node === undefined) throw errno('ENOENT', 'open', p);
    if (isDir(node)) {
      if (mode !== 'read') throw errno('EISDIR', 'open', p);
      throw errno('EISDIR', 'open', p);
    }
    return new MemoryHandle(path.resolve(p), node, mode === 'readWrite', direct);
  }

  async stat(p: string): Promise<FileStat> {
    const { node } = this.#walk(p);
    if (node === undefined) throw errno('ENOENT', 'stat', p);
    return isDir(node) ? dirStat(node) : fileStat(node);
  }

  lstat(p: string): Promise<FileStat> {
    return this.stat(p);
  }

  async readdir(p: string): Promise<string[]> {
    const { node } = this.#walk(p);
    if (node === undefined) throw errno('ENOENT', 'scandir', p);
    if (!isDir(node)) throw errno('ENOTDIR', 'scandir', p);
    return [...node.entries.keys()].sort();
  }

  async readdirFiles(p: string): Promise<string[]> {
    const { node } = this.#walk(p);
    if (node === undefined) throw errno('ENOENT', 'scandir', p);
    if (!isDir(node)) throw errno('ENOTDIR', 'scandir', p);
    return [...node.entries].filter(([, child]) => !isDir(child)).map(([name]) => name).sort();
  }

  async mkdir(p: string): Promise<void> {
    const { parent, name, node } = this.#walk(p);
    if (node !== undefined) throw errno('EEXIST', 'mkdir', p);
    parent.entries.set(name, { ino: this.#nextIno++, entries: new Map(), mtimeMs: Date.now() });
  }

  /** Creates `p` and its missing parents (a test convenience, not part of FileSystem). */
  async mkdirp(p: string): Promise<void> {
    const parts = path.resolve(p).split('/').filter((s) => s.length > 0);
    let cur = '';
    for (const part of parts) {
      cur += `/${part}`;
      const { node } = this.#walk(cur);
      if (node === undefined) await this.mkdir(cur);
    }
  }

  async rename(from: string, to: string): Promise<void> {
    const src = this.#walk(from);
    if (src.node === undefined) throw errno('ENOENT', 'rename', from);
    const dst = this.#walk(to);
    if (dst.node !== undefined && isDir(dst.node) !== isDir(src.node)) throw errno(isDir(dst.node) ? 'EISDIR' : 'ENOTDIR', 'rename', to);
    if (dst.node !== undefined && dst.node === src.node) return;
    if (dst.node !== undefined && !isDir(dst.node)) dst.node.nlink--;
    src.parent.entries.delete(src.name);
    dst.parent.entries.set(dst.name, src.node);
  }

  async unlink(p: string): Promise<void> {
    const { parent, name, node } = this.#walk(p);
    if (node === undefined) throw errno('ENOENT', 'unlink', p);
    if (isDir(node)) throw errno('EISDIR', 'unlink', p);
    node.nlink--;
    parent.entries.delete(name);
  }

  async rmdir(p: string): Promise<void> {
    const { parent, name, node } = this.#walk(p);
    if (node === undefined) throw errno('ENOENT', 'rmdir', p);
    if (!isDir(node)) throw errno('ENOTDIR', 'rmdir', p);
    if (node.entries.size > 0) throw errno('ENOTEMPTY', 'rmdir', p);
    parent.entries.delete(name);
  }

  async link(existing: string, newPath: string): Promise<void> {
    const src = this.#walk(existing);
    if (src.node === undefined) throw errno('ENOENT', 'link', existing);
    if (isDir(src.node)) throw errno('EPERM', 'link', existing);
    const dst = this.#walk(newPath);
    if (dst.node !== undefined) throw errno('EEXIST', 'link', newPath);
    src.node.nlink++;
    dst.parent.entries.set(dst.name, src.node);
  }

  async syncDir(p: string): Promise<void> {
    const { node } = this.#walk(p);
    if (node === undefined) throw errno('ENOENT', 'fsync', p);
  }

  async realpath(p: string): Promise<string> {
    const { node } = this.#walk(p);
    if (node === undefined) throw errno('ENOENT', 'realpath', p);
    return path.resolve(p);
  }

  /** The bytes of file `p` (a test convenience). */
  readFileSync(p: string): Uint8Array {
    const { node } = this.#walk(p);
    if (node === undefined || isDir(node)) throw errno('ENOENT', 'read', p);
    return node.data.slice(0, node.size);
  }
}
