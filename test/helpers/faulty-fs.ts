/**
 * A real file system that fails chosen operations with EIO: a predicate sees every
 * call (operation and path) and decides. For testing the failure paths of code that
 * writes through the FileSystem interface.
 */
import { NodeFileSystem, type FileHandle, type FileStat, type FileSystem, type OpenMode } from '../../lib/index.js';

export type FaultPredicate = (op: string, path: string) => boolean;

/** The errno the next injected failure carries (EIO unless changed). */
export const injected = { code: 'EIO' };

function eio(op: string, p: string): NodeJS.ErrnoException {
  const e = new Error(`${injected.code}: injected ${op} failure '${p}'`) as NodeJS.ErrnoException;
  e.code = injected.code;
  return e;
}

class FaultyHandle implements FileHandle {
  constructor(
    readonly inner: FileHandle,
    readonly fail: FaultPredicate,
  ) {}
  get path(): string {
    return this.inner.path;
  }
  read(b: Uint8Array, o: number, l: number, p: number): Promise<number> {
    if (this.fail('read', this.path)) return Promise.reject(eio('read', this.path));
    return this.inner.read(b, o, l, p);
  }
  readv(bs: readonly Uint8Array[], p: number): Promise<number> {
    if (this.fail('read', this.path)) return Promise.reject(eio('read', this.path));
    return this.inner.readv(bs, p);
  }
  write(bs: readonly Uint8Array[], p: number): Promise<void> {
    if (this.fail('write', this.path)) return Promise.reject(eio('write', this.path));
    return this.inner.write(bs, p);
  }
  datasync(): Promise<void> {
    if (this.fail('datasync', this.path)) return Promise.reject(eio('datasync', this.path));
    return this.inner.datasync();
  }
  truncate(n: number): Promise<void> {
    return this.inner.truncate(n);
  }
  stat(): Promise<FileStat> {
    return this.inner.stat();
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}

export class FaultyFileSystem extends NodeFileSystem implements FileSystem {
  constructor(readonly fail: FaultPredicate) {
    super();
  }
  override async open(p: string, mode: OpenMode): Promise<FileHandle> {
    if (this.fail(`open:${mode}`, p)) throw eio('open', p);
    return new FaultyHandle(await super.open(p, mode), this.fail);
  }
  override async rename(a: string, b: string): Promise<void> {
    if (this.fail('rename', b)) throw eio('rename', b);
    return super.rename(a, b);
  }
  override async unlink(p: string): Promise<void> {
    if (this.fail('unlink', p)) throw eio('unlink', p);
    return super.unlink(p);
  }
  override async link(a: string, b: string): Promise<void> {
    if (this.fail('link', b)) throw eio('link', b);
    return super.link(a, b);
  }
  override async syncDir(p: string): Promise<void> {
    if (this.fail('syncDir', p)) throw eio('syncDir', p);
    return super.syncDir(p);
  }
}
