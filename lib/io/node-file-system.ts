/**
 * The real file system: node:fs behind the {@link FileSystem} interface.
 *
 * Writes loop until every byte is written (a short write is not an error in POSIX);
 * `createExclusive` opens with O_CREAT | O_EXCL | O_NOFOLLOW so it can neither
 * overwrite a file nor be redirected through a planted symlink. A `direct` open adds
 * O_DIRECT where the platform has it, and quietly opens without it where the file
 * system refuses it (EINVAL: tmpfs before Linux 6.6, some FUSE file systems).
 * `DELTADISK_DIRECT_IO=0` in the environment turns direct opens off altogether.
 */
import fs from 'node:fs';
import type { FileHandle, FileStat, FileSystem, OpenMode, OpenOptions } from './file-system.js';

const FLAGS: Record<OpenMode, number> = {
  read: fs.constants.O_RDONLY,
  readWrite: fs.constants.O_RDWR,
  createExclusive: fs.constants.O_RDWR | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_NOFOLLOW,
};

/** The buffers still to transfer after `n` bytes went: whole ones dropped, a partial one cut (short readv/writev). */
function afterTransfer(buffers: Uint8Array[], n: number): Uint8Array[] {
  let i = 0;
  while (i < buffers.length && n >= buffers[i]!.length) {
    n -= buffers[i]!.length;
    i++;
  }
  const rest = buffers.slice(i);
  if (n > 0 && rest.length > 0) rest[0] = rest[0]!.subarray(n);
  return rest;
}

function toStat(s: fs.Stats): FileStat {
  return {
    size: s.size,
    mode: s.mode,
    mtimeMs: s.mtimeMs,
    ino: s.ino,
    dev: s.dev,
    nlink: s.nlink,
    isFile: s.isFile(),
    isDirectory: s.isDirectory(),
    isSymbolicLink: s.isSymbolicLink(),
  };
}

/*
 * The callback API is used instead of fs/promises: it allocates less per call, and
 * this sits on the hot path of every block read.
 */
function fsRead(fd: number, buffer: Uint8Array, offset: number, length: number, position: number): Promise<number> {
  return new Promise((resolve, reject) => {
    fs.read(fd, buffer, offset, length, position, (err, n) => (err ? reject(err) : resolve(n)));
  });
}

function fsReadv(fd: number, buffers: readonly Uint8Array[], position: number): Promise<number> {
  return new Promise((resolve, reject) => {
    fs.readv(fd, buffers as Uint8Array[], position, (err, n) => (err ? reject(err) : resolve(n)));
  });
}

function fsWritev(fd: number, buffers: readonly Uint8Array[], position: number): Promise<number> {
  return new Promise((resolve, reject) => {
    fs.writev(fd, buffers as Uint8Array[], position, (err, n) => (err ? reject(err) : resolve(n)));
  });
}

function fsWrite(fd: number, buffer: Uint8Array, position: number): Promise<number> {
  return new Promise((resolve, reject) => {
    fs.write(fd, buffer, 0, buffer.length, position, (err, n) => (err ? reject(err) : resolve(n)));
  });
}

function fsCall<T>(fn: (cb: (err: NodeJS.ErrnoException | null, value?: T) => void) => void): Promise<T> {
  return new Promise((resolve, reject) => {
    fn((err, value) => (err ? reject(err) : resolve(value as T)));
  });
}

/** writev accepts at most IOV_MAX (1024 on Linux) buffers per call. */
const MAX_IOV = 1024;

/**
 * Bytes handed to one write call. Since Linux 6.16 ext4 caches a large buffered
 * write in large folios, and where free memory is cold (a VM whose free pages went
 * back to the host) allocating them stalls: measured on our CI machine, 10 MiB
 * written and fdatasync'ed took 8-45 ms in one call (half the runs over 40 ms) and
 * 9-11 ms in calls of 4 MiB or less. Not smaller: a chain's 1 MiB write is one
 * record of 1 MiB and a header, and cutting that in two cost sequential writes ~4 %.
 */
export const MAX_WRITE_BYTES = 4 * 1024 * 1024;

/** The first buffers of `pending` up to one write call's limits (the last one cut). */
function writeBatch(pending: readonly Uint8Array[]): Uint8Array[] {
  const batch: Uint8Array[] = [];
  let bytes = 0;
  for (const b of pending) {
    if (batch.length === MAX_IOV || bytes === MAX_WRITE_BYTES) break;
    const take = Math.min(b.length, MAX_WRITE_BYTES - bytes);
    batch.push(take === b.length ? b : b.subarray(0, take));
    bytes += take;
  }
  return batch;
}

/**
 * A closed handle must fail rather than use its old descriptor number: the kernel
 * hands that number to the next file opened, so a late read would return another
 * file's bytes and a late write would damage it.
 */
function closedError(syscall: string, path: string): NodeJS.ErrnoException {
  const e = new Error(`EBADF: file handle is closed, ${syscall} '${path}'`) as NodeJS.ErrnoException;
  e.code = 'EBADF';
  e.syscall = syscall;
  e.path = path;
  return e;
}

class NodeFileHandle implements FileHandle {
  readonly path: string;
  readonly direct: boolean;
  readonly #fd: number;
  #closed = false;

  constructor(path: string, fd: number, direct: boolean) {
    this.path = path;
    this.#fd = fd;
    this.direct = direct;
  }

  async read(buffer: Uint8Array, offset: number, length: number, position: number): Promise<number> {
    if (this.#closed) throw closedError('read', this.path);
    return fsRead(this.#fd, buffer, offset, length, position);
  }

  async readv(buffers: readonly Uint8Array[], position: number): Promise<number> {
    const total = buffers.reduce((n, b) => n + b.length, 0);
    let done = 0;
    let pending = buffers.filter((b) => b.length > 0);
    while (pending.length > 0) {
      const n = await fsReadv(this.#fd, pending.slice(0, MAX_IOV), position + done);
      if (n === 0) break;
      done += n;
      pending = afterTransfer(pending, n);
    }
    return Math.min(done, total);
  }

  async write(buffers: readonly Uint8Array[], position: number): Promise<void> {
    if (this.#closed) throw closedError('write', this.path);
    let pending = buffers.filter((b) => b.length > 0);
    let pos = position;
    while (pending.length > 0) {
      if (this.#closed) throw closedError('write', this.path);
      const batch = writeBatch(pending);
      const n = batch.length === 1 ? await fsWrite(this.#fd, batch[0]!, pos) : await fsWritev(this.#fd, batch, pos);
      pos += n;
      pending = afterTransfer(pending, n);
    }
  }

  async datasync(): Promise<void> {
    if (this.#closed) throw closedError('fdatasync', this.path);
    return fsCall<void>((cb) => fs.fdatasync(this.#fd, cb));
  }

  async truncate(length: number): Promise<void> {
    if (this.#closed) throw closedError('ftruncate', this.path);
    return fsCall<void>((cb) => fs.ftruncate(this.#fd, length, cb));
  }

  async stat(): Promise<FileStat> {
    if (this.#closed) throw closedError('fstat', this.path);
    return toStat(await fsCall<fs.Stats>((cb) => fs.fstat(this.#fd, cb)));
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await fsCall<void>((cb) => fs.close(this.#fd, cb));
  }
}

export class NodeFileSystem implements FileSystem {
  async open(path: string, mode: OpenMode, options: OpenOptions = {}): Promise<FileHandle> {
    const direct = options.direct === true && process.env.DELTADISK_DIRECT_IO !== '0' ? fs.constants.O_DIRECT : undefined;
    const perm = options.mode ?? 0o644;
    if (direct !== undefined) {
      try {
        const fd = await fsCall<number>((cb) => fs.open(path, FLAGS[mode] | direct, perm, cb));
        return new NodeFileHandle(path, fd, true);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EINVAL') throw err;
      }
    }
    try {
      const fd = await fsCall<number>((cb) => fs.open(path, FLAGS[mode], perm, cb));
      return new NodeFileHandle(path, fd, false);
    } catch (err) {
      // Linux refuses O_DIRECT after O_CREAT has made the file (O_EXCL passed, so the
      // file is the one this call created, still empty): open that one.
      if (direct === undefined || mode !== 'createExclusive' || (err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const fd = await fsCall<number>((cb) => fs.open(path, fs.constants.O_RDWR | fs.constants.O_NOFOLLOW, 0o644, cb));
      return new NodeFileHandle(path, fd, false);
    }
  }

  async stat(path: string): Promise<FileStat> {
    return toStat(await fs.promises.stat(path));
  }

  async lstat(path: string): Promise<FileStat> {
    return toStat(await fs.promises.lstat(path));
  }

  readdir(path: string): Promise<string[]> {
    return fs.promises.readdir(path);
  }

  async readdirFiles(path: string): Promise<string[]> {
    // Node looks an entry up itself where the file system records no type.
    return (await fs.promises.readdir(path, { withFileTypes: true })).filter((e) => e.isFile()).map((e) => e.name);
  }

  async mkdir(path: string, mode = 0o755): Promise<void> {
    await fs.promises.mkdir(path, { mode });
  }

  rename(from: string, to: string): Promise<void> {
    return fs.promises.rename(from, to);
  }

  unlink(path: string): Promise<void> {
    return fs.promises.unlink(path);
  }

  rmdir(path: string): Promise<void> {
    return fs.promises.rmdir(path);
  }

  link(existing: string, newPath: string): Promise<void> {
    return fs.promises.link(existing, newPath);
  }

  async syncDir(path: string): Promise<void> {
    const fd = await fsCall<number>((cb) => fs.open(path, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY, cb));
    try {
      await fsCall<void>((cb) => fs.fsync(fd, cb));
    } finally {
      await fsCall<void>((cb) => fs.close(fd, cb));
    }
  }

  realpath(path: string): Promise<string> {
    return fs.promises.realpath(path);
  }
}

/** The process-wide real file system. */
export const nodeFileSystem: FileSystem = new NodeFileSystem();
