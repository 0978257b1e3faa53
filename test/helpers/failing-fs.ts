/**
 * A FileSystem that delegates to a real one and fails chosen calls with an errno
 * error, for unit tests of single behaviours (a failed fsync, a failed rename).
 * Not a crash simulator: the exhaustive fault and power-loss harness is elsewhere.
 */
import type { FileHandle, FileStat, FileSystem, OpenMode } from '../../lib/io/file-system.js';

export type Op = 'open' | 'rename' | 'link' | 'unlink' | 'syncDir' | 'write' | 'datasync' | 'truncate' | 'read' | 'close';

export interface Rule {
  readonly op: Op;
  /** Only calls on paths for which this holds (default: all). */
  readonly path?: (p: string) => boolean;
  readonly code?: string;
  /** Fail this many matching calls, then pass (default: every one). */
  times?: number;
}

export function errnoError(code: string, syscall: string, p: string): NodeJS.ErrnoException {
  const e = new Error(`${code}: injected, ${syscall} '${p}'`) as NodeJS.ErrnoException;
  e.code = code;
  e.syscall = syscall;
  e.path = p;
  return e;
}

export class FailingFileSystem implements FileSystem {
  readonly rules: Rule[] = [];
  /** Every call made, as "op path". */
  readonly calls: string[] = [];

  constructor(readonly inner: FileSystem) {}

  fail(rule: Rule): this {
    this.rules.push(rule);
    return this;
  }

  check(op: Op, p: string): void {
    this.calls.push(`${op} ${p}`);
    for (const r of this.rules) {
      if (r.op !== op || (r.path !== undefined && !r.path(p))) continue;
      if (r.times !== undefined) {
        if (r.times <= 0) continue;
        r.times--;
      }
      throw errnoError(r.code ?? 'EIO', op, p);
    }
  }

  async open(p: string, mode: OpenMode): Promise<FileHandle> {
    this.check('open', p);
    return new FailingHandle(this, await this.inner.open(p, mode));
  }
  stat(p: string): Promise<FileStat> {
    return this.inner.stat(p);
  }
  lstat(p: string): Promise<FileStat> {
    return this.inner.lstat(p);
  }
  readdir(p: string): Promise<string[]> {
    return this.inner.readdir(p);
  }
  mkdir(p: string, mode?: number): Promise<void> {
    return this.inner.mkdir(p, mode);
  }
  async rename(from: string, to: string): Promise<void> {
    this.check('rename', to);
    return this.inner.rename(from, to);
  }
  async unlink(p: string): Promise<void> {
    this.check('unlink', p);
    return this.inner.unlink(p);
  }
  rmdir(p: string): Promise<void> {
    return this.inner.rmdir(p);
  }
  async link(existing: string, newPath: string): Promise<void> {
    this.check('link', newPath);
    return this.inner.link(existing, newPath);
  }
  async syncDir(p: string): Promise<void> {
    this.check('syncDir', p);
    return this.inner.syncDir(p);
  }
  realpath(p: string): Promise<string> {
    return this.inner.realpath(p);
  }
}

export class FailingHandle implements FileHandle {
  constructor(
    readonly owner: FailingFileSystem,
    readonly inner: FileHandle,
  ) {}
  get path(): string {
    return this.inner.path;
  }
  async read(buffer: Uint8Array, offset: number, length: number, position: number): Promise<number> {
    this.owner.check('read', this.path);
    return this.inner.read(buffer, offset, length, position);
  }
  async readv(buffers: readonly Uint8Array[], position: number): Promise<number> {
    this.owner.check('read', this.path);
    return this.inner.readv(buffers, position);
  }
  async write(buffers: readonly Uint8Array[], position: number): Promise<void> {
    this.owner.check('write', this.path);
    return this.inner.write(buffers, position);
  }
  async datasync(): Promise<void> {
    this.owner.check('datasync', this.path);
    return this.inner.datasync();
  }
  async truncate(length: number): Promise<void> {
    this.owner.check('truncate', this.path);
    return this.inner.truncate(length);
  }
  stat(): Promise<FileStat> {
    return this.inner.stat();
  }
  async close(): Promise<void> {
    await this.inner.close();
    this.owner.check('close', this.path);
  }
}
