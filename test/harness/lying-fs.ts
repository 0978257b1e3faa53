/**
 * A device that acknowledges flushes without doing them, for the harness's
 * self-tests: a checker that passes a system running on it cannot be trusted, since
 * every crash state then loses acknowledged data (test/harness/crash-fs.test.ts,
 * test/repo/power-loss.test.ts).
 */
import type { FileHandle, FileSystem } from '../../lib/io/file-system.js';
import type { CrashFS } from './crash-fs.js';

/** A device that acknowledges flushes without doing them: every `what` is a no-op. */
export function lyingFs(inner: CrashFS, what: 'datasync' | 'syncDir'): FileSystem {
  const lyingHandle = (h: FileHandle): FileHandle => ({
    path: h.path,
    read: (...a) => h.read(...a),
    readv: (...a) => h.readv(...a),
    write: (...a) => h.write(...a),
    datasync: async () => undefined,
    truncate: (n) => h.truncate(n),
    stat: () => h.stat(),
    close: () => h.close(),
  });
  return {
    open: async (p, mode) => (what === 'datasync' ? lyingHandle(await inner.open(p, mode)) : inner.open(p, mode)),
    stat: (p) => inner.stat(p),
    lstat: (p) => inner.lstat(p),
    readdir: (p) => inner.readdir(p),
    mkdir: (p) => inner.mkdir(p),
    rename: (a, b) => inner.rename(a, b),
    unlink: (p) => inner.unlink(p),
    rmdir: (p) => inner.rmdir(p),
    link: (a, b) => inner.link(a, b),
    syncDir: async (p) => (what === 'syncDir' ? undefined : inner.syncDir(p)),
    realpath: (p) => inner.realpath(p),
  };
}
