/**
 * The local-directory storage backend. Every operation goes through the pluggable
 * FileSystem, so the fault and power-loss harnesses drive it like the real disk.
 *
 * Layout under the repository directory:
 *
 *     config             JSON, written last by init
 *     packs/00 … ff/     pack files, by the first two hex digits of their name
 *     index/  snapshots/  locks/  plans/  verify/  damaged/
 *
 * Writes follow DESIGN's crash rule 3: a temporary file in the target's directory
 * (`<name>.tmp-<random>`), written, fdatasync'ed, then renamed (replace) or linked
 * (create, which refuses an existing name), then the directory fsync'ed. Temporary
 * files never show in `list`; prune removes those left by a crash. A pack written
 * while it fills (`growing`) has no name yet: its temporary file lies in `packs/00`
 * until the commit renames it into its own directory. Staged files
 * (packs) are written directly where they can be (`writeNewFile`); the small ones
 * (index files, manifests, locks) through the page cache. `readRangeDirect` reads
 * past it too, into pooled aligned buffers, for data read once (a restore's packs).
 */
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { DeltaDiskError, fromSystemError } from '../errors.js';
import { TEMP_INFIX, tempNameFor } from '../io/atomic-replace.js';
import type { FileHandle, FileStat, FileSystem } from '../io/file-system.js';
import { alignDown, alignUp, isDirectAligned, isDirectTransfer } from '../io/aligned-buffer.js';
import { alignedPool } from '../io/buffer-pool.js';
import { readExactly, readUpTo } from '../io/positional.js';
import { settleLimited } from '../io/settle-limited.js';
import { writeNewFile } from '../io/write-new-file.js';
import { isValidRepoName, REPO_FILE_KINDS, type GrowingFile, type LeasedBytes, type RepoFileKind, type StagedFile, type StorageBackend, type StoredFile } from './backend.js';

const DIRS: Record<RepoFileKind, string> = {
  pack: 'packs',
  index: 'index',
  snapshot: 'snapshots',
  lock: 'locks',
  plan: 'plans',
  verify: 'verify',
  damage: 'damaged',
};

const HANDLE_CACHE = 64;
const SYNC_CONCURRENCY = 4;
/**
 * Directories read, and files stat'ed, at once when listing. One at a time, each is
 * a thread-pool round trip: listing 75 manifests took 6-7 ms in a fresh process
 * (1-4 ms now), on the path of every backup (which lists its index files and its
 * manifests), and listing packs reads 256 directories.
 */
const STAT_CONCURRENCY = 16;

interface LocalStaged extends StagedFile {
  readonly tmp: string;
  readonly target: string;
}

/** A read handle shared by concurrent reads; closed once evicted and idle. */
interface CachedHandle {
  readonly handle: Promise<FileHandle>;
  refs: number;
  evicted: boolean;
}

function closeCached(c: CachedHandle): void {
  c.evicted = true;
  if (c.refs === 0) void c.handle.then((x) => x.close()).catch(() => undefined);
}

function isErrno(err: unknown, code: string): boolean {
  return (err as NodeJS.ErrnoException | undefined)?.code === code;
}

/** Closes a handle that was only read from: nothing is lost if that fails, but the error is typed like any other. */
async function closeRead(handle: FileHandle, p: string): Promise<void> {
  await handle.close().catch((err: unknown) => {
    throw fromSystemError(err, p, 'closing repository file failed');
  });
}

export class LocalBackend implements StorageBackend {
  readonly location: string;
  readonly #fs: FileSystem;
  /** Cleared once the file system refuses a direct read: `readRangeDirect` then declines. */
  #directReads = true;
  /** Read handles kept open, least recently used first. */
  readonly #handles = new Map<string, CachedHandle>();

  constructor(fs: FileSystem, root: string) {
    this.#fs = fs;
    this.location = path.resolve(root);
  }

  #dirOf(kind: RepoFileKind, name: string): string {
    const dir = path.join(this.location, DIRS[kind]);
    return kind === 'pack' ? path.join(dir, name.slice(0, 2)) : dir;
  }

  #pathOf(kind: RepoFileKind, name: string): string {
    if (!isValidRepoName(kind, name)) {
      throw new DeltaDiskError('INVALID_ARGUMENT', `${JSON.stringify(name)} is not a valid ${kind} name`);
    }
    return path.join(this.#dirOf(kind, name), name);
  }

  get #config(): string {
    return path.join(this.location, 'config');
  }

  async init(): Promise<void> {
    const fs = this.#fs;
    const mk = async (p: string): Promise<void> => {
      try {
        await fs.mkdir(p, 0o755);
      } catch (err) {
        if (!isErrno(err, 'EEXIST')) throw fromSystemError(err, p, 'creating repository directory failed');
      }
    };
    await mk(this.location);
    for (const kind of REPO_FILE_KINDS) await mk(path.join(this.location, DIRS[kind]));
    const packs = path.join(this.location, DIRS.pack);
    for (let i = 0; i < 256; i++) await mk(path.join(packs, i.toString(16).padStart(2, '0')));
    for (const kind of REPO_FILE_KINDS) await this.#sync(path.join(this.location, DIRS[kind]));
    await this.#sync(packs);
    await this.#sync(this.location);
  }

  async readConfig(maxBytes: number): Promise<Buffer | undefined> {
    let handle: FileHandle;
    try {
      handle = await this.#fs.open(this.#config, 'read');
    } catch (err) {
      if (isErrno(err, 'ENOENT') || isErrno(err, 'ENOTDIR')) return undefined;
      throw fromSystemError(err, this.#config, 'reading repository config failed');
    }
    try {
      const bytes = await readUpTo(handle, 0, maxBytes + 1);
      if (bytes.length > maxBytes) throw new DeltaDiskError('LIMIT_EXCEEDED', `${this.#config} exceeds ${maxBytes} bytes`, { path: this.#config });
      return bytes;
    } finally {
      await closeRead(handle, this.#config);
    }
  }

  async createConfig(bytes: Uint8Array): Promise<void> {
    await this.#writeFile(this.#config, [bytes], 'create');
  }

  async list(kind: RepoFileKind): Promise<StoredFile[]> {
    const out: StoredFile[] = [];
    for (const { name, st } of await this.#statListed(kind)) if (st.isFile) out.push({ name, size: st.size });
    return out;
  }

  async listIrregular(kind: RepoFileKind): Promise<string[]> {
    return (await this.#statListed(kind)).filter((f) => !f.st.isFile).map((f) => f.name);
  }

  /** The valid names of `kind` with what lstat says of each (sorted by name; those gone meanwhile left out). */
  async #statListed(kind: RepoFileKind): Promise<{ name: string; st: FileStat }[]> {
    const files = await this.#listed(kind);
    const stats = await settleLimited(files, STAT_CONCURRENCY, (f) => this.#fs.lstat(path.join(f.dir, f.name)));
    const out: { name: string; st: FileStat }[] = [];
    stats.forEach((st, i) => {
      const { dir, name } = files[i]!;
      if (st.status === 'fulfilled') {
        out.push({ name, st: st.value });
      } else if (!isErrno(st.reason, 'ENOENT')) {
        throw fromSystemError(st.reason, path.join(dir, name), 'listing repository failed');
      }
    });
    return out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  async listNames(kind: RepoFileKind, options: { readonly anyType?: boolean } = {}): Promise<string[]> {
    // Regular files only, as `list` (unless `anyType`): from the directory's own entry
    // types where the file system gives them, else by a stat of each.
    const anyType = options.anyType === true;
    if (!anyType && this.#fs.readdirFiles === undefined) return (await this.list(kind)).map((f) => f.name);
    return (await this.#listed(kind, !anyType)).map((f) => f.name).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  }

  /**
   * The valid names of `kind` in its directories (a pack only in the directory of
   * its prefix); with `filesOnly`, those the directory records as regular files.
   */
  async #listed(kind: RepoFileKind, filesOnly = false): Promise<{ dir: string; name: string }[]> {
    const dirs = kind === 'pack' ? await this.#packDirs() : [path.join(this.location, DIRS[kind])];
    const listed = await settleLimited(dirs, STAT_CONCURRENCY, (dir) => this.#readdir(dir, filesOnly));
    const files: { dir: string; name: string }[] = [];
    listed.forEach((r, i) => {
      if (r.status === 'rejected') throw r.reason;
      const dir = dirs[i]!;
      for (const name of r.value) {
        if (isValidRepoName(kind, name) && (kind !== 'pack' || dir.endsWith(name.slice(0, 2)))) files.push({ dir, name });
      }
    });
    return files;
  }

  async listTemps(): Promise<string[]> {
    const out: string[] = [];
    const dirs = [...(await this.#packDirs()), ...REPO_FILE_KINDS.filter((k) => k !== 'pack').map((k) => path.join(this.location, DIRS[k]))];
    for (const dir of dirs) {
      for (const name of await this.#readdir(dir)) {
        if (name.includes(TEMP_INFIX)) out.push(path.relative(this.location, path.join(dir, name)));
      }
    }
    return out.sort();
  }

  async removeTemp(name: string): Promise<void> {
    const p = path.resolve(this.location, name);
    const rel = path.relative(this.location, p);
    if (rel.startsWith('..') || path.isAbsolute(rel) || !path.basename(p).includes(TEMP_INFIX)) {
      throw new DeltaDiskError('INVALID_ARGUMENT', `${JSON.stringify(name)} is not a temporary file of this repository`);
    }
    await this.#unlink(p);
  }

  async read(kind: RepoFileKind, name: string, maxBytes: number): Promise<Buffer> {
    const p = this.#pathOf(kind, name);
    const handle = await this.#fs.open(p, 'read').catch((err: unknown) => {
      throw fromSystemError(err, p, `reading ${kind} ${name} failed`);
    });
    try {
      const st = await handle.stat();
      if (st.size > maxBytes) throw new DeltaDiskError('LIMIT_EXCEEDED', `${p} is ${st.size} bytes, at most ${maxBytes} allowed`, { path: p });
      return await readExactly(handle, 0, st.size);
    } finally {
      await closeRead(handle, p);
    }
  }

  async readRange(kind: RepoFileKind, name: string, offset: number, length: number): Promise<Buffer> {
    const p = this.#pathOf(kind, name);
    const c = this.#cachedHandle(p);
    c.refs++;
    try {
      return await readExactly(await c.handle, offset, length);
    } finally {
      c.refs--;
      if (c.evicted && c.refs === 0) closeCached(c);
    }
  }

  async readRangeDirect(kind: RepoFileKind, name: string, offset: number, length: number): Promise<LeasedBytes | undefined> {
    if (!this.#directReads) return undefined;
    const p = this.#pathOf(kind, name);
    const start = alignDown(offset);
    const end = alignUp(offset + length);
    const handle = await this.#fs.open(p, 'read', { direct: true }).catch((err: unknown) => {
      throw fromSystemError(err, p, `reading ${kind} ${name} failed`);
    });
    try {
      if (handle.direct !== true) {
        this.#directReads = false;
        return undefined;
      }
      const buf = alignedPool.acquire(end - start);
      // No aligned memory to be had this time (no address space left for it).
      if (!isDirectAligned(buf)) return undefined;
      try {
        const need = offset + length - start;
        let done = 0;
        while (done < need) {
          const n = await handle.read(buf, done, end - start - done, start + done);
          if (n === 0) {
            throw new DeltaDiskError('TRUNCATED', `${p}: wanted ${length} bytes at offset ${offset}, the file ends after ${start + done - offset}`, { path: p, offset: start + done });
          }
          done += n;
        }
      } catch (err) {
        alignedPool.release(buf);
        if ((err as NodeJS.ErrnoException).code !== 'EINVAL') throw fromSystemError(err, p, `reading ${kind} ${name} failed`);
        // An alignment stricter than a page: read through the page cache from now on.
        this.#directReads = false;
        return undefined;
      }
      return { bytes: buf.subarray(offset - start, offset - start + length), release: () => alignedPool.release(buf) };
    } finally {
      await closeRead(handle, p);
    }
  }

  async size(kind: RepoFileKind, name: string): Promise<number | undefined> {
    const p = this.#pathOf(kind, name);
    try {
      // Only a regular file counts, as for `list`.
      const st = await this.#fs.lstat(p);
      return st.isFile ? st.size : undefined;
    } catch (err) {
      if (isErrno(err, 'ENOENT')) return undefined;
      throw fromSystemError(err, p, `reading ${kind} ${name} failed`);
    }
  }

  async write(kind: RepoFileKind, name: string, data: readonly Uint8Array[], mode: 'create' | 'replace'): Promise<void> {
    const p = this.#pathOf(kind, name);
    await this.#writeFile(p, data, mode);
    await this.#dropHandle(p);
  }

  async stage(kind: RepoFileKind, name: string, data: readonly Uint8Array[]): Promise<StagedFile> {
    const target = this.#pathOf(kind, name);
    const tmp = tempNameFor(target);
    try {
      await writeNewFile(this.#fs, tmp, data);
    } catch (err) {
      // EEXIST: the (random) name is not ours to remove; any later failure left ours.
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') await this.#fs.unlink(tmp).catch(() => undefined);
      throw fromSystemError(err, target, 'writing repository file failed');
    }
    const staged: LocalStaged = { kind, name, tmp, target };
    return staged;
  }

  /**
   * A growing file lives under a temporary name in the first pack directory (there
   * `listTemps` finds it if it is never finished) and is renamed into its own by
   * `commit`. Pieces page-aligned in memory and on disk go to the device directly
   * (a pack's arena, written while the pack fills); the rest, and everything where the
   * file system refuses direct I/O, through an ordinary handle.
   */
  async growing(kind: RepoFileKind): Promise<GrowingFile> {
    const dir = kind === 'pack' ? path.join(this.location, DIRS.pack, '00') : path.join(this.location, DIRS[kind]);
    const tmp = path.join(dir, `growing${TEMP_INFIX}${randomBytes(6).toString('hex')}`);
    const fs = this.#fs;
    let first: FileHandle;
    try {
      first = await fs.open(tmp, 'createExclusive', { direct: true });
    } catch (err) {
      throw fromSystemError(err, tmp, 'writing repository file failed');
    }
    // Without direct I/O the one handle is the ordinary one.
    let direct: FileHandle | undefined = first.direct === true ? first : undefined;
    let ordinary: Promise<FileHandle> | undefined = direct === undefined ? Promise.resolve(first) : undefined;
    const plain = (): Promise<FileHandle> => (ordinary ??= fs.open(tmp, 'readWrite'));
    let refused = false;
    const close = async (): Promise<void> => {
      const handles = [direct, ordinary === undefined ? undefined : await ordinary.catch(() => undefined)];
      direct = undefined;
      ordinary = undefined;
      // Both are closed, whichever fails.
      const closed = await Promise.allSettled(handles.map((h) => h?.close()));
      for (const c of closed) if (c.status === 'rejected') throw c.reason;
    };
    /** The whole pages of the first buffer directly (where they may be), what follows them ordinarily. */
    const write = async (data: readonly Uint8Array[], offset: number): Promise<void> => {
      try {
        const first = data[0];
        const whole = first === undefined ? 0 : alignDown(first.length);
        const head = whole > 0 && isDirectTransfer([first!.subarray(0, whole)], offset) ? whole : 0;
        let rest = data;
        if (direct !== undefined && !refused && head > 0) {
          try {
            await direct.write([first!.subarray(0, head)], offset);
            rest = [first!.subarray(head), ...data.slice(1)];
          } catch (err) {
            if (!isErrno(err, 'EINVAL')) throw err;
            refused = true; // an alignment stricter than a page: the rest through the page cache
          }
        }
        const at = offset + (rest === data ? 0 : head);
        if (rest.some((b) => b.length > 0)) await (await plain()).write(rest, at);
      } catch (err) {
        throw fromSystemError(err, tmp, 'writing repository file failed');
      }
    };
    return {
      write: (data, offset) => write([data], offset),
      finish: async (name, rest, offset) => {
        const target = this.#pathOf(kind, name);
        await write(rest, offset);
        try {
          await close();
        } catch (err) {
          throw fromSystemError(err, tmp, 'writing repository file failed');
        }
        const staged: LocalStaged = { kind, name, tmp, target };
        return staged;
      },
      discard: async () => {
        await close().catch(() => undefined);
        await fs.unlink(tmp).catch(() => undefined);
      },
    };
  }

  async commit(files: readonly StagedFile[]): Promise<void> {
    const list = files as readonly LocalStaged[];
    // 1. Data durable (a few fsyncs at a time: the device works on them together).
    for (let i = 0; i < list.length; i += SYNC_CONCURRENCY) {
      await Promise.all(list.slice(i, i + SYNC_CONCURRENCY).map(async (f) => {
        try {
          const h = await this.#fs.open(f.tmp, 'read');
          try {
            await h.datasync();
          } finally {
            await h.close();
          }
        } catch (err) {
          throw fromSystemError(err, f.target, 'syncing repository file failed');
        }
      }));
    }
    // 2. Then the names, and the directories holding them.
    const dirs = new Set<string>();
    for (const f of list) {
      try {
        await this.#fs.rename(f.tmp, f.target);
      } catch (err) {
        throw fromSystemError(err, f.target, 'publishing repository file failed');
      }
      await this.#dropHandle(f.target);
      dirs.add(path.dirname(f.target));
      // A growing file's temporary name lay in another directory: its removal too.
      dirs.add(path.dirname(f.tmp));
    }
    for (const d of dirs) await this.#sync(d);
  }

  async discard(files: readonly StagedFile[]): Promise<void> {
    for (const f of files as readonly LocalStaged[]) await this.#fs.unlink(f.tmp).catch(() => undefined);
  }

  async remove(kind: RepoFileKind, name: string): Promise<boolean> {
    const p = this.#pathOf(kind, name);
    await this.#dropHandle(p);
    return this.#unlink(p);
  }

  async close(): Promise<void> {
    const all = [...this.#handles.values()];
    this.#handles.clear();
    for (const c of all) closeCached(c);
  }

  // ---------------------------------------------------------------- internals

  async #packDirs(): Promise<string[]> {
    const root = path.join(this.location, DIRS.pack);
    return (await this.#readdir(root)).filter((d) => /^[0-9a-f]{2}$/.test(d)).sort().map((d) => path.join(root, d));
  }

  async #readdir(dir: string, filesOnly = false): Promise<string[]> {
    try {
      return await (filesOnly && this.#fs.readdirFiles !== undefined ? this.#fs.readdirFiles(dir) : this.#fs.readdir(dir));
    } catch (err) {
      if (isErrno(err, 'ENOENT')) return [];
      throw fromSystemError(err, dir, 'listing repository failed');
    }
  }

  async #sync(dir: string): Promise<void> {
    await this.#fs.syncDir(dir).catch((err: unknown) => {
      throw fromSystemError(err, dir, 'syncing repository directory failed');
    });
  }

  async #unlink(p: string): Promise<boolean> {
    try {
      await this.#fs.unlink(p);
    } catch (err) {
      if (isErrno(err, 'ENOENT')) return false;
      throw fromSystemError(err, p, 'removing repository file failed');
    }
    await this.#sync(path.dirname(p));
    return true;
  }

  async #writeFile(target: string, data: readonly Uint8Array[], mode: 'create' | 'replace'): Promise<void> {
    const fs = this.#fs;
    const tmp = tempNameFor(target);
    let created = false;
    try {
      const handle = await fs.open(tmp, 'createExclusive');
      created = true;
      try {
        await handle.write(data, 0);
        await handle.datasync();
      } finally {
        await handle.close();
      }
      if (mode === 'replace') {
        await fs.rename(tmp, target);
        created = false;
      } else {
        // link() refuses an existing target, unlike rename().
        await fs.link(tmp, target);
        created = false;
        // The file is in place: a temporary name left behind is a leak prune removes.
        await fs.unlink(tmp).catch(() => undefined);
      }
      await fs.syncDir(path.dirname(target));
    } catch (err) {
      if (created) await fs.unlink(tmp).catch(() => undefined);
      if (isErrno(err, 'EEXIST')) throw new DeltaDiskError('ALREADY_EXISTS', `${target} already exists`, { path: target, cause: err });
      throw fromSystemError(err, target, 'writing repository file failed');
    }
  }

  #cachedHandle(p: string): CachedHandle {
    let c = this.#handles.get(p);
    if (c !== undefined) {
      this.#handles.delete(p);
      this.#handles.set(p, c);
      return c;
    }
    const handle = this.#fs.open(p, 'read').catch((err: unknown) => {
      if (this.#handles.get(p) === c) this.#handles.delete(p);
      throw fromSystemError(err, p, 'opening repository file failed');
    });
    c = { handle, refs: 0, evicted: false };
    this.#handles.set(p, c);
    if (this.#handles.size > HANDLE_CACHE) {
      const [oldest, victim] = this.#handles.entries().next().value as [string, CachedHandle];
      this.#handles.delete(oldest);
      closeCached(victim);
    }
    return c;
  }

  async #dropHandle(p: string): Promise<void> {
    const c = this.#handles.get(p);
    if (c === undefined) return;
    this.#handles.delete(p);
    closeCached(c);
  }
}
