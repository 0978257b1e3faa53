/**
 * A FileSystem wrapper that counts the bytes written and read through direct and
 * ordinary handles, and can refuse direct writes or reads (EINVAL) after a number of them, as
 * a file system with a stricter alignment than ours would, or not grant direct
 * opens at all, as one without O_DIRECT.
 */
import type { FileHandle, FileStat, FileSystem, OpenMode, OpenOptions } from '../../lib/io/file-system.js';
import { errno } from '../../lib/io/memory-file-system.js';

export class DirectProbeFS implements FileSystem {
  readonly inner: FileSystem;
  directBytes = 0;
  plainBytes = 0;
  directReadBytes = 0;
  /** Opens of existing files for writing (a writer's second, ordinary handle). */
  readWriteOpens = 0;
  /** datasync calls, on any handle. */
  datasyncs = 0;
  /** Direct writes allowed before every further one fails with EINVAL (Infinity: never). */
  directWritesAllowed: number;
  /** Whether direct opens are passed on (else every handle is ordinary). */
  readonly grantDirect: boolean;
  /** Direct reads fail with EINVAL (a stricter alignment than ours). */
  refuseDirectReads = false;
  /** Direct reads allowed before every further one fails with EINVAL (Infinity: never). */
  directReadsAllowed = Infinity;

  constructor(inner: FileSystem, directWritesAllowed = Infinity, grantDirect = true) {
    this.inner = inner;
    this.directWritesAllowed = directWritesAllowed;
    this.grantDirect = grantDirect;
  }

  async open(p: string, mode: OpenMode, options?: OpenOptions): Promise<FileHandle> {
    if (mode === 'readWrite') this.readWriteOpens++;
    const h = await this.inner.open(p, mode, this.grantDirect ? options : {});
    const probe = this;
    return {
      path: h.path,
      direct: h.direct === true,
      async read(b, o, l, pos) {
        if (h.direct === true && (probe.refuseDirectReads || probe.directReadsAllowed <= 0)) throw errno('EINVAL', 'read', p);
        if (h.direct === true) probe.directReadsAllowed--;
        const n = await h.read(b, o, l, pos);
        if (h.direct === true) probe.directReadBytes += n;
        return n;
      },
      readv: (b, pos) => h.readv(b, pos),
      async write(buffers, position) {
        const n = buffers.reduce((s, b) => s + b.length, 0);
        if (h.direct === true) {
          if (probe.directWritesAllowed <= 0) throw errno('EINVAL', 'write', p);
          probe.directWritesAllowed--;
          probe.directBytes += n;
        } else {
          probe.plainBytes += n;
        }
        return h.write(buffers, position);
      },
      datasync: () => {
        probe.datasyncs++;
        return h.datasync();
      },
      truncate: (n) => h.truncate(n),
      stat: () => h.stat(),
      close: () => h.close(),
    };
  }

  stat(p: string): Promise<FileStat> { return this.inner.stat(p); }
  lstat(p: string): Promise<FileStat> { return this.inner.lstat(p); }
  readdir(p: string): Promise<string[]> { return this.inner.readdir(p); }
  mkdir(p: string, mode?: number): Promise<void> { return this.inner.mkdir(p, mode); }
  rename(a: string, b: string): Promise<void> { return this.inner.rename(a, b); }
  unlink(p: string): Promise<void> { return this.inner.unlink(p); }
  rmdir(p: string): Promise<void> { return this.inner.rmdir(p); }
  link(a: string, b: string): Promise<void> { return this.inner.link(a, b); }
  syncDir(p: string): Promise<void> { return this.inner.syncDir(p); }
  realpath(p: string): Promise<string> { return this.inner.realpath(p); }
}
