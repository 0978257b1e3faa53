/**
 * One set of expectations for every FileSystem: the real one (NodeFileSystem, on
 * real files) and the in-memory one the model tests use. If the memory file
 * system drifts from the real contract, model tests would pass on behaviour the
 * real disk does not have; this suite keeps them honest.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { alignedBuffer, DIRECT_ALIGN } from '../../lib/io/aligned-buffer.js';
import type { FileHandle, FileSystem } from '../../lib/io/file-system.js';
import { MemoryFileSystem } from '../../lib/io/memory-file-system.js';
import { NodeFileSystem } from '../../lib/io/node-file-system.js';
import { tempDir } from '../helpers/temp-dir.js';

interface Subject {
  fs: FileSystem;
  root: string;
  /** The root as realpath names it. */
  realRoot: string;
  cleanup(): void;
}

const subjects: { name: string; make: () => Promise<Subject> }[] = [
  {
    name: 'NodeFileSystem',
    make: async () => {
      const { dir, cleanup } = tempDir('deltadisk-fsconf-');
      return { fs: new NodeFileSystem(), root: dir, realRoot: fs.realpathSync(dir), cleanup };
    },
  },
  {
    name: 'MemoryFileSystem',
    make: async () => {
      const mem = new MemoryFileSystem();
      await mem.mkdirp('/mem/root');
      return { fs: mem, root: '/mem/root', realRoot: '/mem/root', cleanup: () => undefined };
    },
  },
];

async function errnoOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    return String((err as NodeJS.ErrnoException).code);
  }
  return 'no error';
}

async function readAll(h: FileHandle, length: number, position = 0): Promise<{ n: number; bytes: Buffer }> {
  const buf = Buffer.alloc(length);
  const n = await h.read(buf, 0, length, position);
  return { n, bytes: buf.subarray(0, n) };
}

for (const subject of subjects) {
  describe(`FileSystem conformance: ${subject.name}`, () => {
    let s: Subject;
    let f: FileSystem;
    const p = (...names: string[]) => path.join(s.root, ...names);

    beforeEach(async () => {
      s = await subject.make();
      f = s.fs;
    });
    afterEach(() => s.cleanup());

    async function create(name: string, data: Uint8Array): Promise<void> {
      const h = await f.open(p(name), 'createExclusive');
      await h.write([data], 0);
      await h.close();
    }

    it('opening a missing file is ENOENT in every mode but createExclusive', async () => {
      expect(await errnoOf(f.open(p('missing'), 'read'))).toBe('ENOENT');
      expect(await errnoOf(f.open(p('missing'), 'readWrite'))).toBe('ENOENT');
      expect(await errnoOf(f.open(p('no-dir', 'x'), 'createExclusive'))).toBe('ENOENT');
    });

    it('createExclusive creates an empty file, and refuses an existing one without touching it', async () => {
      const h = await f.open(p('a'), 'createExclusive');
      expect((await h.stat()).size).toBe(0);
      await h.write([Buffer.from('keep')], 0);
      await h.close();
      expect(await errnoOf(f.open(p('a'), 'createExclusive'))).toBe('EEXIST');
      const r = await f.open(p('a'), 'read');
      expect((await readAll(r, 10)).bytes.toString()).toBe('keep');
      await r.close();
    });

    it('positional writes land where asked; a gap reads as zeros; reads stop at end of file', async () => {
      const h = await f.open(p('a'), 'createExclusive');
      await h.write([Buffer.from('abc')], 10);
      await h.write([Buffer.from('XY')], 1);
      expect((await h.stat()).size).toBe(13);
      const all = await readAll(h, 20);
      expect(all.n).toBe(13);
      expect([...all.bytes]).toEqual([0, 0x58, 0x59, 0, 0, 0, 0, 0, 0, 0, 0x61, 0x62, 0x63]);
      expect((await readAll(h, 5, 13)).n).toBe(0);
      expect((await readAll(h, 5, 100)).n).toBe(0);
      await h.close();
    });

    it('reads into the middle of a buffer', async () => {
      await create('a', Buffer.from('hello'));
      const h = await f.open(p('a'), 'read');
      const buf = Buffer.alloc(9, 0x2e);
      expect(await h.read(buf, 2, 5, 0)).toBe(5);
      expect(buf.toString()).toBe('..hello..');
      await h.close();
    });

    it('writes several buffers back to back, empty ones included', async () => {
      const h = await f.open(p('a'), 'createExclusive');
      await h.write([Buffer.from('ab'), Buffer.alloc(0), Buffer.from('cde'), new Uint8Array([0x66])], 4);
      expect((await readAll(h, 20, 4)).bytes.toString()).toBe('abcdef');
      await h.write([], 0);
      expect((await h.stat()).size).toBe(10);
      await h.close();
    });

    it('truncate shrinks, and extends with zeros', async () => {
      await create('a', Buffer.from('0123456789'));
      const h = await f.open(p('a'), 'readWrite');
      await h.truncate(4);
      expect((await readAll(h, 20)).bytes.toString()).toBe('0123');
      await h.truncate(8);
      expect([...(await readAll(h, 20)).bytes]).toEqual([0x30, 0x31, 0x32, 0x33, 0, 0, 0, 0]);
      await h.datasync();
      await h.close();
      expect((await f.stat(p('a'))).size).toBe(8);
    });

    it('a read-only handle refuses writes and truncation (EBADF)', async () => {
      await create('a', Buffer.from('x'));
      const h = await f.open(p('a'), 'read');
      expect(await errnoOf(h.write([Buffer.from('y')], 0))).toBe('EBADF');
      expect(await errnoOf(h.truncate(0))).toMatch(/EBADF|EINVAL/);
      await h.close();
    });

    it('a closed handle refuses everything (EBADF) and closing twice is harmless', async () => {
      await create('a', Buffer.from('secret'));
      const h = await f.open(p('a'), 'readWrite');
      await h.close();
      await h.close();
      // Whatever file the old descriptor number now names, a closed handle must not touch it.
      await create('b', Buffer.alloc(64, 0x55));
      const others = await Promise.all([0, 1, 2, 3].map(() => f.open(p('b'), 'readWrite')));
      expect(await errnoOf(h.read(Buffer.alloc(4), 0, 4, 0))).toBe('EBADF');
      expect(await errnoOf(h.write([Buffer.from('zz')], 0))).toBe('EBADF');
      expect(await errnoOf(h.datasync())).toBe('EBADF');
      expect(await errnoOf(h.truncate(0))).toBe('EBADF');
      expect(await errnoOf(h.stat())).toBe('EBADF');
      for (const o of others) {
        expect((await readAll(o, 100)).bytes.equals(Buffer.alloc(64, 0x55))).toBe(true);
        await o.close();
      }
    });

    it('stat and lstat tell files from directories; missing is ENOENT', async () => {
      await create('a', Buffer.from('12345'));
      await f.mkdir(p('d'));
      const fa = await f.stat(p('a'));
      expect([fa.isFile, fa.isDirectory, fa.isSymbolicLink, fa.size, fa.nlink]).toEqual([true, false, false, 5, 1]);
      const fd = await f.lstat(p('d'));
      expect([fd.isFile, fd.isDirectory]).toEqual([false, true]);
      expect(await errnoOf(f.stat(p('missing')))).toBe('ENOENT');
      expect(await errnoOf(f.lstat(p('missing')))).toBe('ENOENT');
      expect(await errnoOf(f.stat(p('a', 'below-a-file')))).toBe('ENOTDIR');
    });

    it('opening a directory for writing is EISDIR', async () => {
      await f.mkdir(p('d'));
      expect(await errnoOf(f.open(p('d'), 'readWrite'))).toBe('EISDIR');
    });

    it('readdir lists the names of a directory; not a directory is ENOTDIR', async () => {
      await create('b', Buffer.alloc(1));
      await create('a', Buffer.alloc(1));
      await f.mkdir(p('c'));
      expect((await f.readdir(s.root)).sort()).toEqual(['a', 'b', 'c']);
      expect(await errnoOf(f.readdir(p('missing')))).toBe('ENOENT');
      expect(await errnoOf(f.readdir(p('a')))).toBe('ENOTDIR');
    });

    it('mkdir creates one level; an existing name is EEXIST, a missing parent ENOENT', async () => {
      await f.mkdir(p('d'));
      expect(await errnoOf(f.mkdir(p('d')))).toBe('EEXIST');
      expect(await errnoOf(f.mkdir(p('x', 'y')))).toBe('ENOENT');
      await create('file', Buffer.alloc(1));
      expect(await errnoOf(f.mkdir(p('file')))).toBe('EEXIST');
    });

    it('rename moves a file and replaces an existing target', async () => {
      await create('a', Buffer.from('new'));
      await create('b', Buffer.from('old content'));
      await f.rename(p('a'), p('b'));
      expect(await errnoOf(f.stat(p('a')))).toBe('ENOENT');
      const h = await f.open(p('b'), 'read');
      expect((await readAll(h, 20)).bytes.toString()).toBe('new');
      await h.close();
      expect(await errnoOf(f.rename(p('missing'), p('c')))).toBe('ENOENT');
    });

    it('a handle open on a replaced or unlinked file keeps its content', async () => {
      await create('a', Buffer.from('first'));
      const h = await f.open(p('a'), 'read');
      await create('tmp', Buffer.from('second'));
      await f.rename(p('tmp'), p('a'));
      expect((await readAll(h, 20)).bytes.toString()).toBe('first');
      await f.unlink(p('a'));
      expect((await readAll(h, 20)).bytes.toString()).toBe('first');
      await h.close();
    });

    it('unlink removes a name; missing is ENOENT, a directory is refused', async () => {
      await create('a', Buffer.alloc(1));
      await f.unlink(p('a'));
      expect(await errnoOf(f.stat(p('a')))).toBe('ENOENT');
      expect(await errnoOf(f.unlink(p('a')))).toBe('ENOENT');
      await f.mkdir(p('d'));
      expect(await errnoOf(f.unlink(p('d')))).toMatch(/EISDIR|EPERM/);
    });

    it('rmdir removes an empty directory only', async () => {
      await f.mkdir(p('d'));
      await create(path.join('d', 'x'), Buffer.alloc(1));
      expect(await errnoOf(f.rmdir(p('d')))).toBe('ENOTEMPTY');
      await f.unlink(p('d', 'x'));
      await f.rmdir(p('d'));
      expect(await errnoOf(f.stat(p('d')))).toBe('ENOENT');
      await create('file', Buffer.alloc(1));
      expect(await errnoOf(f.rmdir(p('file')))).toBe('ENOTDIR');
      expect(await errnoOf(f.rmdir(p('missing')))).toBe('ENOENT');
    });

    it('link makes a second name for the same file, and never replaces a target', async () => {
      await create('a', Buffer.from('shared'));
      await f.link(p('a'), p('b'));
      expect((await f.stat(p('a'))).nlink).toBe(2);
      expect((await f.stat(p('a'))).ino).toBe((await f.stat(p('b'))).ino);
      const h = await f.open(p('a'), 'readWrite');
      await h.write([Buffer.from('SH')], 0);
      await h.close();
      const r = await f.open(p('b'), 'read');
      expect((await readAll(r, 20)).bytes.toString()).toBe('SHared');
      await r.close();
      await create('c', Buffer.from('other'));
      expect(await errnoOf(f.link(p('a'), p('c')))).toBe('EEXIST');
      expect(await errnoOf(f.link(p('missing'), p('d')))).toBe('ENOENT');
      await f.unlink(p('a'));
      expect((await f.stat(p('b'))).nlink).toBe(1);
    });

    it('syncDir accepts a directory and refuses a missing one', async () => {
      await f.syncDir(s.root);
      expect(await errnoOf(f.syncDir(p('missing')))).toBe('ENOENT');
    });

    it('a direct open is granted here, and holds transfers to page alignment (EINVAL)', async () => {
      const h = await f.open(p('direct'), 'createExclusive', { direct: true });
      // The temp directory is ext4 on our machines; a file system without O_DIRECT
      // would open without it (direct false), which the write-path tests cover.
      expect(h.direct).toBe(true);
      const page = alignedBuffer(3 * DIRECT_ALIGN);
      page.fill(0x5a);
      await h.write([page.subarray(0, 2 * DIRECT_ALIGN)], DIRECT_ALIGN);
      // Linux holds them to the device's logical block (512 B or 4 KiB); 100 misses both.
      expect(await errnoOf(h.write([page.subarray(0, 100)], 0))).toBe('EINVAL');
      expect(await errnoOf(h.write([page.subarray(0, DIRECT_ALIGN)], 100))).toBe('EINVAL');
      expect(await errnoOf(h.write([page.subarray(100, 100 + DIRECT_ALIGN)], 0))).toBe('EINVAL');
      await h.close();
      const r = await f.open(p('direct'), 'read');
      expect(r.direct === true).toBe(false);
      const { n, bytes } = await readAll(r, 4 * DIRECT_ALIGN);
      expect(n).toBe(3 * DIRECT_ALIGN);
      expect(bytes.subarray(0, DIRECT_ALIGN).every((b) => b === 0)).toBe(true);
      expect(bytes.subarray(DIRECT_ALIGN).every((b) => b === 0x5a)).toBe(true);
      await r.close();
    });

    if (subject.name === 'NodeFileSystem') {
      it('DELTADISK_DIRECT_IO=0 turns direct opens off', async () => {
        process.env.DELTADISK_DIRECT_IO = '0';
        try {
          const h = await f.open(p('plain'), 'createExclusive', { direct: true });
          expect(h.direct).toBe(false);
          await h.write([Buffer.from('unaligned is fine')], 3);
          await h.close();
        } finally {
          delete process.env.DELTADISK_DIRECT_IO;
        }
      });
    }

    it('realpath names an existing path absolutely; missing is ENOENT', async () => {
      await f.mkdir(p('d'));
      await create(path.join('d', 'x'), Buffer.alloc(1));
      expect(await f.realpath(p('d', '..', 'd', 'x'))).toBe(path.join(s.realRoot, 'd', 'x'));
      expect(await errnoOf(f.realpath(p('missing')))).toBe('ENOENT');
    });
  });
}
