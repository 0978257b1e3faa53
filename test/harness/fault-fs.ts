/**
 * FaultFS: wraps a FileSystem and makes chosen calls fail (after SQLite's
 * `sqlite3_io_error_pending` / `_persist` and QEMU's blkdebug). The one fault
 * injector of the test suite: the harness's sweeps and single-behaviour tests alike.
 *
 * Every call, on the file system or on a handle it opened, is counted by kind (an
 * open that creates counts as `create`, other opens as `open`). Two ways to fail:
 *  - armed with a counted rule (`arm`), the `at`-th call matching the rule's kinds
 *    (1-based, counted from when the rule was armed) rejects with an errno error
 *    instead of reaching the inner file system; a *persistent* rule keeps failing
 *    every matching call after it, a *transient* one fails that call only, and a
 *    `dead` one fails every call of any kind after it (the device, or the process,
 *    died there). Unarmed, it only counts, which is how a sweep learns how many
 *    calls a workload makes;
 *  - with path rules (`fail`), calls of a kind on matching paths (a rename or link:
 *    its new name) fail, every time or
 *    the first `times` times (a failed fsync of one file, a rename of another).
 * With `trace`, every call is logged as "kind path", in order.
 */
import type { FileHandle, FileStat, FileSystem, OpenMode, OpenOptions } from '../../lib/io/file-system.js';
import { treeOpsOf, type TreeOps } from '../../lib/repo/tree-ops.js';

export const FAULT_OPS = [
  'open',
  'create',
  'stat',
  'lstat',
  'readdir',
  'mkdir',
  'rename',
  'unlink',
  'rmdir',
  'link',
  'syncDir',
  'realpath',
  'read',
  'write',
  'datasync',
  'truncate',
  'fstat',
  'close',
] as const;
export type FaultOp = (typeof FAULT_OPS)[number];

/** The calls that change what is stored (what a power cut can interrupt). */
export const MUTATING_OPS: readonly FaultOp[] = ['create', 'write', 'datasync', 'truncate', 'mkdir', 'rename', 'unlink', 'rmdir', 'link', 'syncDir'];

export interface FaultRule {
  /** 1-based index, among calls matching `ops`, of the first call to fail. */
  readonly at: number;
  /** The kinds of call counted and failed; 'any' counts every call. */
  readonly ops: readonly FaultOp[] | 'any';
  readonly errno: 'EIO' | 'ENOSPC';
  readonly persistent: boolean;
  /** From the failed call on, every call of any kind fails (a crash: nothing more reaches the disk). */
  readonly dead?: boolean;
}

/** Fails calls of one kind on the paths `path` accepts (default all), `times` times (default: always). */
export interface PathRule {
  readonly op: FaultOp;
  readonly path?: (p: string) => boolean;
  /** The errno (default EIO). */
  readonly code?: string;
  times?: number;
}

export interface InjectedFault {
  readonly op: FaultOp;
  readonly path: string;
  readonly errno: string;
}

export function describeRule(r: FaultRule): string {
  return `${r.errno} ${r.dead ? 'then dead' : r.persistent ? 'persistent' : 'transient'} at call ${r.at} of ${r.ops === 'any' ? 'any kind' : r.ops.join('|')}`;
}

function fault(code: string, op: FaultOp, p: string): NodeJS.ErrnoException {
  const e = new Error(`${code}: injected fault in ${op} '${p}'`) as NodeJS.ErrnoException;
  e.code = code;
  e.syscall = op;
  e.path = p;
  return e;
}

class FaultHandle implements FileHandle {
  readonly #fs: FaultFS;
  readonly #inner: FileHandle;

  constructor(fs: FaultFS, inner: FileHandle) {
    this.#fs = fs;
    this.#inner = inner;
  }

  get path(): string {
    return this.#inner.path;
  }

  get direct(): boolean {
    return this.#inner.direct === true;
  }

  read(buffer: Uint8Array, offset: number, length: number, position: number): Promise<number> {
    return this.#fs.call('read', this.path, () => this.#inner.read(buffer, offset, length, position));
  }

  readv(buffers: readonly Uint8Array[], position: number): Promise<number> {
    return this.#fs.call('read', this.path, () => this.#inner.readv(buffers, position));
  }

  write(buffers: readonly Uint8Array[], position: number): Promise<void> {
    return this.#fs.call('write', this.path, () => this.#inner.write(buffers, position));
  }

  datasync(): Promise<void> {
    return this.#fs.call('datasync', this.path, () => this.#inner.datasync());
  }

  truncate(length: number): Promise<void> {
    return this.#fs.call('truncate', this.path, () => this.#inner.truncate(length));
  }

  stat(): Promise<FileStat> {
    return this.#fs.call('fstat', this.path, () => this.#inner.stat());
  }

  async close(): Promise<void> {
    // A failed close still releases the descriptor (as close(2) does on Linux).
    let err: unknown;
    try {
      this.#fs.check('close', this.path);
    } catch (e) {
      err = e;
    }
    await this.#inner.close();
    if (err !== undefined) throw err;
  }
}

export interface FaultFSOptions {
  /** Log every call in `trace`. */
  readonly trace?: boolean;
}

export class FaultFS implements FileSystem, TreeOps {
  readonly inner: FileSystem;
  #rule: FaultRule | undefined;
  #matched = 0;
  #calls = 0;
  #dead = false;
  readonly #byOp = new Map<FaultOp, number>();
  readonly #pathRules: PathRule[] = [];
  readonly injected: InjectedFault[] = [];
  /** Every call as "kind path", when constructed with `trace`. */
  readonly trace: string[] | undefined;
  readonly #tree: TreeOps;

  constructor(inner: FileSystem, options: FaultFSOptions = {}) {
    this.inner = inner;
    this.trace = options.trace === true ? [] : undefined;
    this.#tree = treeOpsOf(inner);
  }

  /** Adds a path rule (see the file comment). */
  fail(rule: PathRule): this {
    this.#pathRules.push(rule);
    return this;
  }

  /** True once a `dead` rule fired: every call fails from then on. */
  get crashed(): boolean {
    return this.#dead;
  }

  /** Calls of any kind since construction or `resetCounts`. */
  get calls(): number {
    return this.#calls;
  }

  callsOf(ops: readonly FaultOp[] | 'any'): number {
    if (ops === 'any') return this.#calls;
    return ops.reduce((s, op) => s + (this.#byOp.get(op) ?? 0), 0);
  }

  resetCounts(): void {
    this.#calls = 0;
    this.#byOp.clear();
  }

  arm(rule: FaultRule): void {
    this.#rule = rule;
    this.#matched = 0;
  }

  disarm(): void {
    this.#rule = undefined;
  }

  get armed(): boolean {
    return this.#rule !== undefined;
  }

  /** Counts a call and throws the injected error if the rule says this one fails. */
  check(op: FaultOp, p: string): void {
    this.#calls++;
    this.#byOp.set(op, (this.#byOp.get(op) ?? 0) + 1);
    this.trace?.push(`${op} ${p}`);
    if (this.#dead) throw this.#inject(op, p, 'EIO');
    for (const pr of this.#pathRules) {
      if (pr.op !== op || (pr.path !== undefined && !pr.path(p))) continue;
      if (pr.times !== undefined) {
        if (pr.times <= 0) continue;
        pr.times--;
      }
      throw this.#inject(op, p, pr.code ?? 'EIO');
    }
    const r = this.#rule;
    if (r === undefined || (r.ops !== 'any' && !r.ops.includes(op))) return;
    this.#matched++;
    if (this.#matched === r.at || (r.persistent && this.#matched > r.at)) {
      if (r.dead === true) this.#dead = true;
      throw this.#inject(op, p, r.errno);
    }
  }

  #inject(op: FaultOp, p: string, code: string): NodeJS.ErrnoException {
    this.injected.push({ op, path: p, errno: code });
    return fault(code, op, p);
  }

  async call<T>(op: FaultOp, p: string, fn: () => Promise<T>): Promise<T> {
    this.check(op, p);
    return fn();
  }

  async open(p: string, mode: OpenMode, options?: OpenOptions): Promise<FileHandle> {
    const inner = await this.call(mode === 'createExclusive' ? 'create' : 'open', p, () => this.inner.open(p, mode, options));
    return new FaultHandle(this, inner);
  }

  stat(p: string): Promise<FileStat> {
    return this.call('stat', p, () => this.inner.stat(p));
  }

  lstat(p: string): Promise<FileStat> {
    return this.call('lstat', p, () => this.inner.lstat(p));
  }

  readdir(p: string): Promise<string[]> {
    return this.call('readdir', p, () => this.inner.readdir(p));
  }

  mkdir(p: string, mode?: number): Promise<void> {
    return this.call('mkdir', p, () => this.inner.mkdir(p, mode));
  }

  rename(from: string, to: string): Promise<void> {
    return this.call('rename', to, () => this.inner.rename(from, to));
  }

  unlink(p: string): Promise<void> {
    return this.call('unlink', p, () => this.inner.unlink(p));
  }

  rmdir(p: string): Promise<void> {
    return this.call('rmdir', p, () => this.inner.rmdir(p));
  }

  link(existing: string, newPath: string): Promise<void> {
    return this.call('link', newPath, () => this.inner.link(existing, newPath));
  }

  syncDir(p: string): Promise<void> {
    return this.call('syncDir', p, () => this.inner.syncDir(p));
  }

  realpath(p: string): Promise<string> {
    return this.call('realpath', p, () => this.inner.realpath(p));
  }

  // Symbolic links, modes and times (lib/repo/tree-ops.ts): those of the inner file
  // system, never counted or failed (they carry no data a crash could lose).

  readlink(p: string): Promise<string> {
    return this.#tree.readlink(p);
  }

  symlink(target: string, p: string): Promise<void> {
    return this.#tree.symlink(target, p);
  }

  chmod(p: string, mode: number): Promise<void> {
    return this.#tree.chmod(p, mode);
  }

  lutimes(p: string, atimeMs: number, mtimeMs: number): Promise<void> {
    return this.#tree.lutimes(p, atimeMs, mtimeMs);
  }
}

/** A file system that SIGKILLs this process just before its `at`-th call (the SIGKILL children). */
export class KillingFS extends FaultFS {
  readonly #at: number;

  constructor(inner: FileSystem, at: number) {
    super(inner);
    this.#at = at;
  }

  override check(op: FaultOp, p: string): void {
    super.check(op, p);
    if (this.calls === this.#at) process.kill(process.pid, 'SIGKILL');
  }
}
