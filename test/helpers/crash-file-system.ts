/**
 * A real file system that "loses power" at its Nth mutating call: that call and
 * every later one (read or write) fail, so the code under test can neither finish
 * nor clean up, exactly as if the process had died there. What reached the disk
 * before stays, as on a real crash after the preceding fsyncs.
 */
import type { FileHandle, FileSystem, OpenMode } from '../../lib/io/file-system.js';
import { nodeFileSystem } from '../../lib/io/node-file-system.js';

export class CrashFileSystem implements FileSystem {
  #left: number;
  crashed = false;
  /** Mutating calls made so far (with crashAt = Infinity: how many an operation makes). */
  steps = 0;

  constructor(crashAt: number) {
    this.#left = crashAt;
  }

  #step(mutating: boolean): void {
    if (this.crashed) throw Object.assign(new Error('simulated crash'), { code: 'EIO' });
    if (mutating) this.steps++;
    if (mutating && --this.#left <= 0) {
      this.crashed = true;
      throw Object.assign(new Error('simulated crash'), { code: 'EIO' });
    }
  }

  async open(p: string, mode: OpenMode): Promise<FileHandle> {
    this.#step(mode === 'createExclusive');
    const h = await nodeFileSystem.open(p, mode);
    const step = (m: boolean): void => this.#step(m);
    return {
      path: h.path,
      read: async (b, o, l, pos) => (step(false), h.read(b, o, l, pos)),
      readv: async (bs, pos) => (step(false), h.readv(bs, pos)),
      write: async (bs, pos) => (step(true), h.write(bs, pos)),
      datasync: async () => (step(true), h.datasync()),
      truncate: async (l) => (step(true), h.truncate(l)),
      stat: async () => (step(false), h.stat()),
      close: () => h.close(),
    };
  }
  async stat(p: string) { this.#step(false); return nodeFileSystem.stat(p); }
  async lstat(p: string) { this.#step(false); return nodeFileSystem.lstat(p); }
  async readdir(p: string) { this.#step(false); return nodeFileSystem.readdir(p); }
  async realpath(p: string) { this.#step(false); return nodeFileSystem.realpath(p); }
  async mkdir(p: string, mode?: number) { this.#step(true); return nodeFileSystem.mkdir(p, mode); }
  async rename(a: string, b: string) { this.#step(true); return nodeFileSystem.rename(a, b); }
  async unlink(p: string) { this.#step(true); return nodeFileSystem.unlink(p); }
  async rmdir(p: string) { this.#step(true); return nodeFileSystem.rmdir(p); }
  async link(a: string, b: string) { this.#step(true); return nodeFileSystem.link(a, b); }
  async syncDir(p: string) { this.#step(true); return nodeFileSystem.syncDir(p); }
}
