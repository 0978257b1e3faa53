/**
 * NodeFileSystem beyond the shared conformance suite: the write loops (POSIX allows
 * a write or writev to write fewer bytes than asked, and writev takes at most
 * IOV_MAX buffers) and createExclusive's refusal to follow a planted symlink.
 *
 * Short writes are provoked by wrapping node:fs's own write/writev so each call
 * writes at most a few bytes of what it was given, on a real file. Large writes go
 * to the kernel in pieces of at most MAX_WRITE_BYTES (see there why).
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import fc from 'fast-check';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { MAX_WRITE_BYTES, NodeFileSystem } from '../../lib/io/node-file-system.js';
import { tempDir } from '../helpers/temp-dir.js';

let dir: string;
let cleanup: () => void;
const nfs = new NodeFileSystem();

beforeEach(() => {
  ({ dir, cleanup } = tempDir('deltadisk-nodefs-'));
});
afterEach(() => {
  vi.restoreAllMocks();
  cleanup();
});

type WriteCb = (err: NodeJS.ErrnoException | null, n: number) => void;

/** Makes every fs.write / fs.writev call write at most `cap` bytes (a short write). */
function capWrites(cap: number): { writes: () => number; writevs: () => number } {
  const realWrite = fs.write.bind(fs) as unknown as (fd: number, b: Uint8Array, o: number, l: number, p: number, cb: WriteCb) => void;
  const realWritev = fs.writev.bind(fs) as unknown as (fd: number, bufs: Uint8Array[], p: number, cb: WriteCb) => void;
  let writes = 0;
  let writevs = 0;
  vi.spyOn(fs, 'write').mockImplementation(((fd: number, b: Uint8Array, o: number, l: number, p: number, cb: WriteCb) => {
    writes++;
    realWrite(fd, b, o, Math.min(l, cap), p, cb);
  }) as unknown as typeof fs.write);
  vi.spyOn(fs, 'writev').mockImplementation(((fd: number, bufs: Uint8Array[], p: number, cb: WriteCb) => {
    writevs++;
    // Write only the first `cap` bytes of the batch, possibly ending inside a buffer.
    const cut: Uint8Array[] = [];
    let left = cap;
    for (const b of bufs) {
      if (left === 0) break;
      cut.push(b.subarray(0, Math.min(b.length, left)));
      left -= Math.min(b.length, left);
    }
    realWritev(fd, cut, p, cb);
  }) as unknown as typeof fs.writev);
  return { writes: () => writes, writevs: () => writevs };
}

describe('NodeFileSystem write loops', () => {
  it('a single buffer is written whole despite short writes', async () => {
    const data = randomBytes(10_000);
    const h = await nfs.open(path.join(dir, 'a'), 'createExclusive');
    const calls = capWrites(777);
    await h.write([data], 5);
    vi.restoreAllMocks();
    await h.close();
    expect(calls.writes()).toBe(Math.ceil(data.length / 777));
    const back = fs.readFileSync(path.join(dir, 'a'));
    expect(back.subarray(0, 5).equals(Buffer.alloc(5))).toBe(true);
    expect(back.subarray(5).equals(data)).toBe(true);
  });

  it('several buffers are written whole despite short writevs that end mid-buffer', async () => {
    const parts = [randomBytes(100), randomBytes(1), Buffer.alloc(0), randomBytes(333), randomBytes(64)];
    const h = await nfs.open(path.join(dir, 'a'), 'createExclusive');
    const calls = capWrites(37);
    await h.write(parts, 0);
    vi.restoreAllMocks();
    await h.close();
    expect(calls.writevs()).toBeGreaterThan(10);
    expect(fs.readFileSync(path.join(dir, 'a')).equals(Buffer.concat(parts))).toBe(true);
  });

  it('more buffers than IOV_MAX are written in batches, in order', async () => {
    const parts = Array.from({ length: 3000 }, (_, i) => Buffer.from([i & 0xff, (i >> 8) & 0xff, 0x5a]));
    const h = await nfs.open(path.join(dir, 'a'), 'createExclusive');
    await h.write(parts, 100);
    await h.datasync();
    await h.close();
    const back = fs.readFileSync(path.join(dir, 'a'));
    expect(back.length).toBe(100 + 9000);
    expect(back.subarray(100).equals(Buffer.concat(parts))).toBe(true);
  });

  it('more buffers than IOV_MAX with short writes as well', async () => {
    const parts = Array.from({ length: 2500 }, (_, i) => Buffer.alloc(1 + (i % 7), i & 0xff));
    const h = await nfs.open(path.join(dir, 'a'), 'createExclusive');
    capWrites(1000);
    await h.write(parts, 0);
    vi.restoreAllMocks();
    await h.close();
    expect(fs.readFileSync(path.join(dir, 'a')).equals(Buffer.concat(parts))).toBe(true);
  });

  it('large writes go to the kernel in pieces of at most MAX_WRITE_BYTES, and land whole and in order', async () => {
    const sizes = fc.array(fc.oneof(fc.integer({ min: 0, max: 4096 }), fc.integer({ min: MAX_WRITE_BYTES - 3, max: 2 * MAX_WRITE_BYTES + 5 })), { minLength: 1, maxLength: 4 });
    await fc.assert(
      fc.asyncProperty(sizes, fc.integer({ min: 0, max: 9999 }), async (lengths, position) => {
        const parts = lengths.map((n) => randomBytes(n));
        const file = path.join(dir, `p-${lengths.join('-')}-${position}`);
        const realWrite = fs.write.bind(fs) as unknown as (fd: number, b: Uint8Array, o: number, l: number, p: number, cb: WriteCb) => void;
        const realWritev = fs.writev.bind(fs) as unknown as (fd: number, bufs: Uint8Array[], p: number, cb: WriteCb) => void;
        const calls: number[] = [];
        vi.spyOn(fs, 'write').mockImplementation(((fd: number, b: Uint8Array, o: number, l: number, p: number, cb: WriteCb) => {
          calls.push(l);
          realWrite(fd, b, o, l, p, cb);
        }) as unknown as typeof fs.write);
        vi.spyOn(fs, 'writev').mockImplementation(((fd: number, bufs: Uint8Array[], p: number, cb: WriteCb) => {
          calls.push(bufs.reduce((n, b) => n + b.length, 0));
          realWritev(fd, bufs, p, cb);
        }) as unknown as typeof fs.writev);
        const h = await nfs.open(file, 'createExclusive');
        try {
          await h.write(parts, position);
        } finally {
          vi.restoreAllMocks();
          await h.close();
        }
        const total = lengths.reduce((a, b) => a + b, 0);
        expect(Math.max(0, ...calls)).toBeLessThanOrEqual(MAX_WRITE_BYTES);
        expect(calls.length).toBe(Math.ceil(total / MAX_WRITE_BYTES));
        const back = fs.readFileSync(file);
        expect(back.length).toBe(total === 0 ? 0 : position + total);
        if (total > 0) expect(back.subarray(position).equals(Buffer.concat(parts))).toBe(true);
        fs.rmSync(file);
      }),
      { numRuns: 15 },
    );
  });

  it('a failing write rejects with the errno error', async () => {
    const h = await nfs.open(path.join(dir, 'a'), 'createExclusive');
    vi.spyOn(fs, 'write').mockImplementation(((_fd: number, _b: Uint8Array, _o: number, _l: number, _p: number, cb: WriteCb) => {
      const e = new Error('EIO') as NodeJS.ErrnoException;
      e.code = 'EIO';
      cb(e, 0);
    }) as unknown as typeof fs.write);
    await expect(h.write([Buffer.from('x')], 0)).rejects.toMatchObject({ code: 'EIO' });
    vi.restoreAllMocks();
    await h.close();
  });
});

describe('NodeFileSystem createExclusive', () => {
  it('does not follow a planted symlink to a file that does not exist yet', async () => {
    const victim = path.join(dir, 'victim');
    fs.symlinkSync(victim, path.join(dir, 'planted'));
    await expect(nfs.open(path.join(dir, 'planted'), 'createExclusive')).rejects.toMatchObject({ code: 'EEXIST' });
    expect(fs.existsSync(victim)).toBe(false);
  });

  it('does not follow a planted symlink to an existing file, nor change it', async () => {
    const victim = path.join(dir, 'victim');
    fs.writeFileSync(victim, 'precious');
    fs.symlinkSync(victim, path.join(dir, 'planted'));
    await expect(nfs.open(path.join(dir, 'planted'), 'createExclusive')).rejects.toMatchObject({ code: 'EEXIST' });
    expect(fs.readFileSync(victim, 'utf8')).toBe('precious');
  });

  it('creates files with mode 0644 (before the umask)', async () => {
    const h = await nfs.open(path.join(dir, 'a'), 'createExclusive');
    await h.close();
    const mode = fs.statSync(path.join(dir, 'a')).mode & 0o777;
    expect(mode & ~0o644).toBe(0);
  });

  it('exactly one of many concurrent exclusive creators wins', async () => {
    const target = path.join(dir, 'race');
    const results = await Promise.allSettled(Array.from({ length: 20 }, () => nfs.open(target, 'createExclusive')));
    const won = results.filter((r) => r.status === 'fulfilled');
    expect(won).toHaveLength(1);
    for (const r of results) {
      if (r.status === 'rejected') expect((r.reason as NodeJS.ErrnoException).code).toBe('EEXIST');
      else await r.value.close();
    }
  });
});

describe('NodeFileSystem paths', () => {
  it('lstat describes a symlink itself, stat its target', async () => {
    fs.writeFileSync(path.join(dir, 't'), 'x');
    fs.symlinkSync(path.join(dir, 't'), path.join(dir, 'l'));
    expect((await nfs.lstat(path.join(dir, 'l'))).isSymbolicLink).toBe(true);
    expect((await nfs.stat(path.join(dir, 'l'))).isFile).toBe(true);
  });

  it('realpath resolves symlinks', async () => {
    fs.mkdirSync(path.join(dir, 'real'));
    fs.symlinkSync(path.join(dir, 'real'), path.join(dir, 'alias'));
    expect(await nfs.realpath(path.join(dir, 'alias'))).toBe(fs.realpathSync(path.join(dir, 'real')));
  });

  it('syncDir refuses a file (it opens with O_DIRECTORY)', async () => {
    fs.writeFileSync(path.join(dir, 'f'), 'x');
    await expect(nfs.syncDir(path.join(dir, 'f'))).rejects.toMatchObject({ code: 'ENOTDIR' });
  });
});
