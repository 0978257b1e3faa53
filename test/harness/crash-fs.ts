/**
 * CrashFS: a FileSystem that simulates power loss at any instant (after SQLite's
 * test6.c and CrashMonkey).
 *
 * It behaves like an in-memory file system for the code running on it, and records
 * every change in order: write, truncate, datasync, create, mkdir, rename, link,
 * unlink, rmdir and directory fsync. `crashState(k, policy)` then builds the files
 * as they could be found after a power cut right after the first `k` recorded
 * operations:
 *  - a file's writes and truncates are durable only once a later datasync of that
 *    file (before the cut) covers them;
 *  - a directory entry change (create, rename, link, unlink, mkdir, rmdir) is durable
 *    only once a later fsync of that directory covers it;
 *  - every other ("pending") operation is kept, dropped or, for a write, torn: each
 *    512 B or 4 KiB sector it touches ends up old, new or garbage, at least one of
 *    them garbage. `tearScope: 'sector'` writes garbage over the whole sectors (the
 *    test6.c model, where a torn sector also destroys the bytes around the write);
 *    `'range'` confines garbage to the bytes written (the "powersafe overwrite"
 *    property SQLite assumes by default on Unix).
 * Policies: keep all pending, drop all, keep a prefix in recording order (a device
 * that writes sequentially), or a seeded random choice per operation.
 *
 * The result is itself a CrashFS whose durable baseline is the crashed state, so
 * recovery can be recorded and crashed in turn. What happens before `checkpoint()`
 * (a workload's setup) counts as durable.
 */
import path from 'node:path';
import { isDirectTransfer } from '../../lib/io/aligned-buffer.js';
import type { FileHandle, FileStat, FileSystem, OpenMode, OpenOptions } from '../../lib/io/file-system.js';
import { errno } from '../../lib/io/memory-file-system.js';
import { describePolicy, dirsOf, Image, isSync, sameEntry, tearWrite, type CrashOp, type CrashPolicy, type Entry, type Inode } from './crash-image.js';
import { Rng } from './rng.js';

export { describePolicy, type CrashOp, type CrashPolicy } from './crash-image.js';

/** A summary of one crash state, for reports. */
export interface CrashStateInfo {
  readonly point: number;
  readonly policy: string;
  readonly pending: number;
  readonly kept: number;
  readonly dropped: number;
  readonly torn: number;
}

class CrashHandle implements FileHandle {
  readonly path: string;
  readonly direct: boolean;
  readonly #fs: CrashFS;
  readonly #ino: number;
  readonly #writable: boolean;
  #closed = false;

  constructor(fs: CrashFS, p: string, ino: number, writable: boolean, direct: boolean) {
    this.#fs = fs;
    this.path = p;
    this.#ino = ino;
    this.#writable = writable;
    this.direct = direct;
  }

  #check(write: boolean, syscall: string): void {
    if (this.#closed || (write && !this.#writable)) throw errno('EBADF', syscall, this.path);
  }

  async read(buffer: Uint8Array, offset: number, length: number, position: number): Promise<number> {
    this.#check(false, 'read');
    if (this.direct && !isDirectTransfer([buffer.subarray(offset, offset + length)], position)) throw errno('EINVAL', 'read', this.path);
    const n = this.#fs.liveInode(this.#ino);
    const count = Math.max(0, Math.min(length, n.size - position));
    if (count > 0) buffer.set(n.data.subarray(position, position + count), offset);
    return count;
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
    this.#check(true, 'write');
    if (this.direct && !isDirectTransfer(buffers, position)) throw errno('EINVAL', 'write', this.path);
    const total = buffers.reduce((s, b) => s + b.length, 0);
    const data = new Uint8Array(total);
    let at = 0;
    for (const b of buffers) {
      data.set(b, at);
      at += b.length;
    }
    this.#fs.record({ k: 'write', ino: this.#ino, pos: position, data, path: this.path });
  }

  async datasync(): Promise<void> {
    this.#check(false, 'fsync');
    this.#fs.record({ k: 'datasync', ino: this.#ino, path: this.path });
  }

  async truncate(length: number): Promise<void> {
    this.#check(true, 'ftruncate');
    this.#fs.record({ k: 'truncate', ino: this.#ino, size: length, path: this.path });
  }

  async stat(): Promise<FileStat> {
    this.#check(false, 'fstat');
    return this.#fs.fileStat(this.#ino);
  }

  async close(): Promise<void> {
    this.#closed = true;
  }
}

export class CrashFS implements FileSystem {
  #baseline: Image;
  #live: Image;
  #log: CrashOp[] = [];
  #nextIno: number;

  constructor(baseline?: Image) {
    this.#baseline = baseline ?? new Image();
    this.#live = this.#baseline.clone();
    this.#nextIno = Math.max(1, ...this.#baseline.inodes.keys()) + 1;
  }

  /** Operations recorded since the last checkpoint. */
  get length(): number {
    return this.#log.length;
  }

  get log(): readonly CrashOp[] {
    return this.#log;
  }

  /** Makes everything so far durable and starts a fresh recording. */
  checkpoint(): void {
    this.#baseline = this.#live.clone();
    this.#log = [];
  }

  /** Creates `p` and its missing parents, durably (a test convenience). */
  async mkdirp(p: string): Promise<void> {
    const parts = path.resolve(p).split('/').filter((s) => s.length > 0);
    let cur = '/';
    for (const part of parts) {
      const next = path.join(cur, part);
      if (!this.#live.dirs.has(next)) await this.mkdir(next);
      await this.syncDir(cur);
      cur = next;
    }
  }

  /** Writes a whole file durably (a test convenience for fixtures such as a base image). */
  async writeFileDurable(p: string, data: Uint8Array): Promise<void> {
    const h = await this.open(p, 'createExclusive');
    await h.write([data], 0);
    await h.datasync();
    await h.close();
    await this.syncDir(path.dirname(path.resolve(p)));
  }

  /** The files as the running program sees them now. */
  liveFiles(): Map<string, Uint8Array> {
    return this.#live.files();
  }

  // ------------------------------------------------------------ recording

  record(op: CrashOp): void {
    this.#log.push(op);
    this.#live.apply(op);
  }

  liveInode(ino: number): Inode {
    return this.#live.inode(ino);
  }

  fileStat(ino: number): FileStat {
    const n = this.#live.inode(ino);
    return { size: n.size, mode: 0o100644, mtimeMs: 0, ino, dev: 7, nlink: 1, isFile: true, isDirectory: false, isSymbolicLink: false };
  }

  #split(p: string): { dir: string; name: string; entries: Map<string, Entry> | undefined; entry: Entry | undefined } {
    const abs = path.resolve(p);
    const dir = path.dirname(abs);
    const name = path.basename(abs);
    const entries = this.#live.dirs.get(dir);
    return { dir, name, entries, entry: abs === '/' ? { kind: 'dir' } : entries?.get(name) };
  }

  #parentOrThrow(p: string, syscall: string): { dir: string; name: string; entries: Map<string, Entry>; entry: Entry | undefined } {
    const s = this.#split(p);
    if (s.entries === undefined) throw errno('ENOENT', syscall, p);
    return { ...s, entries: s.entries };
  }

  // ------------------------------------------------------------ FileSystem

  async open(p: string, mode: OpenMode, options: OpenOptions = {}): Promise<FileHandle> {
    const direct = options.direct === true;
    const { dir, name, entry } = this.#parentOrThrow(p, 'open');
    const abs = path.resolve(p);
    if (mode === 'createExclusive') {
      if (entry !== undefined) throw errno('EEXIST', 'open', p);
      const ino = this.#nextIno++;
      this.record({ k: 'create', dir, name, ino });
      return new CrashHandle(this, abs, ino, true, direct);
    }
    if (entry === undefined) throw errno('ENOENT', 'open', p);
    if (entry.kind === 'dir') throw errno('EISDIR', 'open', p);
    return new CrashHandle(this, abs, entry.ino, mode === 'readWrite', direct);
  }

  async stat(p: string): Promise<FileStat> {
    const { entry } = this.#split(p);
    if (entry === undefined) throw errno('ENOENT', 'stat', p);
    if (entry.kind === 'dir') {
      return { size: 4096, mode: 0o040755, mtimeMs: 0, ino: 1, dev: 7, nlink: 2, isFile: false, isDirectory: true, isSymbolicLink: false };
    }
    return this.fileStat(entry.ino);
  }

  lstat(p: string): Promise<FileStat> {
    return this.stat(p);
  }

  async readdir(p: string): Promise<string[]> {
    const entries = this.#live.dirs.get(path.resolve(p));
    if (entries === undefined) throw errno('ENOENT', 'scandir', p);
    return [...entries.keys()].sort();
  }

  async mkdir(p: string): Promise<void> {
    const { dir, name, entry } = this.#parentOrThrow(p, 'mkdir');
    if (entry !== undefined) throw errno('EEXIST', 'mkdir', p);
    this.record({ k: 'mkdir', dir, name });
  }

  async rename(from: string, to: string): Promise<void> {
    const src = this.#parentOrThrow(from, 'rename');
    if (src.entry === undefined) throw errno('ENOENT', 'rename', from);
    const dst = this.#parentOrThrow(to, 'rename');
    if (dst.entry !== undefined && dst.entry.kind !== src.entry.kind) throw errno(dst.entry.kind === 'dir' ? 'EISDIR' : 'ENOTDIR', 'rename', to);
    if (src.entry.kind === 'dir') throw errno('EXDEV', 'rename', from); // directories are never renamed by deltadisk
    if (dst.entry !== undefined && sameEntry(dst.entry, src.entry)) return;
    this.record({ k: 'rename', fromDir: src.dir, fromName: src.name, toDir: dst.dir, toName: dst.name, entry: src.entry });
  }

  async unlink(p: string): Promise<void> {
    const { dir, name, entry } = this.#parentOrThrow(p, 'unlink');
    if (entry === undefined) throw errno('ENOENT', 'unlink', p);
    if (entry.kind === 'dir') throw errno('EISDIR', 'unlink', p);
    this.record({ k: 'unlink', dir, name, ino: entry.ino });
  }

  async rmdir(p: string): Promise<void> {
    const { dir, name, entry } = this.#parentOrThrow(p, 'rmdir');
    if (entry === undefined) throw errno('ENOENT', 'rmdir', p);
    if (entry.kind !== 'dir') throw errno('ENOTDIR', 'rmdir', p);
    if ((this.#live.dirs.get(path.resolve(p))?.size ?? 0) > 0) throw errno('ENOTEMPTY', 'rmdir', p);
    this.record({ k: 'rmdir', dir, name });
  }

  async link(existing: string, newPath: string): Promise<void> {
    const src = this.#split(existing);
    if (src.entry === undefined) throw errno('ENOENT', 'link', existing);
    if (src.entry.kind === 'dir') throw errno('EPERM', 'link', existing);
    const dst = this.#parentOrThrow(newPath, 'link');
    if (dst.entry !== undefined) throw errno('EEXIST', 'link', newPath);
    this.record({ k: 'link', dir: dst.dir, name: dst.name, ino: src.entry.ino });
  }

  async syncDir(p: string): Promise<void> {
    const abs = path.resolve(p);
    if (!this.#live.dirs.has(abs)) throw errno('ENOENT', 'fsync', p);
    this.record({ k: 'syncdir', dir: abs });
  }

  async realpath(p: string): Promise<string> {
    const { entry } = this.#split(p);
    if (entry === undefined) throw errno('ENOENT', 'realpath', p);
    return path.resolve(p);
  }

  // ------------------------------------------------------------ crashing

  /** Indices (below `point`) of the operations not yet durable at `point`, sync operations excluded. */
  pendingAt(point: number): number[] {
    const syncedInodes = new Set<number>();
    const syncedDirs = new Set<string>();
    const pending: number[] = [];
    for (let i = Math.min(point, this.#log.length) - 1; i >= 0; i--) {
      const op = this.#log[i]!;
      if (op.k === 'datasync') {
        syncedInodes.add(op.ino);
        continue;
      }
      if (op.k === 'syncdir') {
        syncedDirs.add(op.dir);
        continue;
      }
      const durable = op.k === 'write' || op.k === 'truncate' ? syncedInodes.has(op.ino) : dirsOf(op).every((d) => syncedDirs.has(d));
      if (!durable) pending.push(i);
    }
    return pending.reverse();
  }

  /**
   * The file system as found after a power cut right after the first `point`
   * recorded operations, with pending operations treated per `policy`.
   */
  crashState(point: number, policy: CrashPolicy): { fs: CrashFS; info: CrashStateInfo } {
    if (!Number.isInteger(point) || point < 0 || point > this.#log.length) throw new Error(`crash point ${point} outside 0…${this.#log.length}`);
    const pending = this.pendingAt(point);
    const pendingSet = new Set(pending);
    const rng = policy.kind === 'random' ? new Rng(policy.seed) : undefined;
    const image = this.#baseline.clone();
    let kept = 0;
    let dropped = 0;
    let torn = 0;
    let pendingIndex = 0;
    for (let i = 0; i < point; i++) {
      const op = this.#log[i]!;
      if (isSync(op)) continue;
      if (!pendingSet.has(i)) {
        image.apply(op);
        continue;
      }
      const ordinal = pendingIndex++;
      let choice: 'keep' | 'drop' | 'tear';
      switch (policy.kind) {
        case 'keep-all':
          choice = 'keep';
          break;
        case 'drop-all':
          choice = 'drop';
          break;
        case 'prefix':
          choice = ordinal < policy.keep ? 'keep' : 'drop';
          break;
        case 'random': {
          const r = rng!.next();
          const pKeep = policy.pKeep ?? 0.4;
          const pTear = policy.pTear ?? 0.3;
          choice = r < pKeep ? 'keep' : op.k === 'write' && r < pKeep + pTear ? 'tear' : 'drop';
          break;
        }
      }
      if (choice === 'keep') {
        image.apply(op);
        kept++;
      } else if (choice === 'drop') {
        dropped++;
      } else {
        tearWrite(image, op as Extract<CrashOp, { k: 'write' }>, rng!, policy as Extract<CrashPolicy, { kind: 'random' }>);
        torn++;
      }
    }
    return {
      fs: new CrashFS(image),
      info: { point, policy: describePolicy(policy), pending: pending.length, kept, dropped, torn },
    };
  }

  /** Short text of recorded operation `i` (for failure reports). */
  describeOp(i: number): string {
    const op = this.#log[i];
    if (op === undefined) return `#${i}: (end)`;
    switch (op.k) {
      case 'write':
        return `#${i} write ${path.basename(op.path)} @${op.pos} +${op.data.length}`;
      case 'truncate':
        return `#${i} truncate ${path.basename(op.path)} to ${op.size}`;
      case 'datasync':
        return `#${i} datasync ${path.basename(op.path)}`;
      case 'rename':
        return `#${i} rename ${op.fromName} -> ${op.toName}`;
      case 'syncdir':
        return `#${i} syncdir ${op.dir}`;
      default:
        return `#${i} ${op.k} ${op.name}`;
    }
  }
}
