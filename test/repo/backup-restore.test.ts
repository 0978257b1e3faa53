/**
 * Backing up and restoring files and directories on the real file system: round
 * trips byte for byte with modes, times and links; empty and sparse files;
 * deduplication across backups and inside one; compression only where it pays;
 * dry runs that write nothing; unreadable sources as warnings.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { backup, DeltaDiskError, MemoryFileSystem, Repository, restore } from '../../lib/index.js';
import { nodeFileSystem } from '../../lib/io/node-file-system.js';
import { DirectProbeFS } from '../helpers/direct-fs.js';
import { randomData, snapshotTree, textData, withRepo, writeTree } from '../helpers/repo.js';
import { tempDir } from '../helpers/temp-dir.js';

let dir: string;
let cleanup: () => void;
let repoDir: string;

beforeEach(async () => {
  ({ dir, cleanup } = tempDir('deltadisk-repo-'));
  repoDir = path.join(dir, 'repo');
  await Repository.init(repoDir, { packSize: 1 << 20, cdc: { min: 16 * 1024, avg: 64 * 1024, max: 256 * 1024 } });
});
afterEach(() => cleanup());

function packBytes(): number {
  let n = 0;
  const root = path.join(repoDir, 'packs');
  for (const d of fs.readdirSync(root)) for (const f of fs.readdirSync(path.join(root, d))) n += fs.statSync(path.join(root, d, f)).size;
  return n;
}

describe('backup and restore', () => {
  it('round-trips files, directories, empty files, links, modes and times', async () => {
    const src = path.join(dir, 'src');
    writeTree(src, {
      'a.txt': textData(300_000),
      'empty': '',
      'deep/er/still/file.bin': randomData(70_000),
      'exec.sh': '#!/bin/sh\necho hi\n',
      'unicode-é.txt': 'é',
    });
    fs.mkdirSync(path.join(src, 'emptydir'));
    fs.chmodSync(path.join(src, 'exec.sh'), 0o750);
    fs.chmodSync(path.join(src, 'deep'), 0o700);
    fs.symlinkSync('a.txt', path.join(src, 'link'));
    fs.symlinkSync('deep/er', path.join(src, 'dirlink'));
    const mtime = new Date('2020-02-02T02:02:02.123Z');
    fs.utimesSync(path.join(src, 'a.txt'), mtime, mtime);
    const r = await withRepo(repoDir, 'shared', (repo) => backup(repo, [src]));
    expect(r.summary).toMatchObject({ files: 5, dirs: 5, symlinks: 2, warnings: 0 });
    const out = path.join(dir, 'out');
    const res = await withRepo(repoDir, 'shared', (repo) => restore(repo, r.id, { target: out, verify: true }));
    expect(res.summary.verified).toBe(true);
    expect(snapshotTree(path.join(out, 'src'))).toEqual(snapshotTree(src));
    expect(fs.statSync(path.join(out, 'src', 'a.txt')).mtimeMs).toBeCloseTo(mtime.getTime(), 0);
  });

  it('writes packs, and restored files of a MiB or more, past the page cache, and restores from packs read so', async () => {
    const MiB = 1024 * 1024;
    const src = path.join(dir, 'src');
    writeTree(src, { 'big.bin': randomData(3 * MiB + 123), 'small.txt': textData(10_000) });
    const packs = new DirectProbeFS(nodeFileSystem);
    const repo = await Repository.open(repoDir, { lock: 'shared', fs: packs });
    const r = await backup(repo, [src]).finally(() => repo.close());
    // 1 MiB packs in this suite: all of each pack's data but its last partial page.
    expect(packs.directBytes).toBeGreaterThan(3 * MiB - 4 * 4096);
    const target = new DirectProbeFS(nodeFileSystem);
    const out = path.join(dir, 'out');
    const source = new DirectProbeFS(nodeFileSystem);
    const rp = await Repository.open(repoDir, { lock: 'shared', fs: source });
    await restore(rp, r.id, { target: out, fs: target, verify: true }).finally(() => rp.close());
    expect(snapshotTree(path.join(out, 'src'))).toEqual(snapshotTree(src));
    expect(target.directBytes).toBeGreaterThanOrEqual(3 * MiB + 123);
    expect(target.plainBytes).toBeGreaterThanOrEqual(10_000);
    // The packs were read past the page cache too.
    expect(source.directReadBytes).toBeGreaterThanOrEqual(3 * MiB);
  });

  it('reads disk images past the page cache, and through it where direct reads are refused', async () => {
    const MiB = 1024 * 1024;
    const src = path.join(dir, 'src');
    const image = Buffer.concat([randomData(2 * MiB), Buffer.alloc(MiB), randomData(MiB + 4096 * 3 + 17)]);
    writeTree(src, { 'disk.img': image });
    for (const refuse of [false, true]) {
      const source = new DirectProbeFS(nodeFileSystem);
      source.refuseDirectReads = refuse;
      const r = await withRepo(repoDir, 'shared', (repo) => backup(repo, [src], { sourceFs: source }));
      expect(r.summary.warnings).toBe(0);
      expect(source.directReadBytes).toBe(refuse ? 0 : image.length);
      const out = path.join(dir, `out-${refuse}`);
      await withRepo(repoDir, 'shared', (repo) => restore(repo, r.id, { target: out }));
      expect(fs.readFileSync(path.join(out, 'src', 'disk.img')).equals(image)).toBe(true);
    }
  });

  it('counts a disk image once when a direct read is refused midway and it is read again', async () => {
    const MiB = 1024 * 1024;
    const src = path.join(dir, 'src');
    const image = randomData(9 * MiB + 4096);
    writeTree(src, { 'disk.img': image });
    const source = new DirectProbeFS(nodeFileSystem);
    source.directReadsAllowed = 2; // two 4 MiB pieces read and counted, then EINVAL
    const seen: number[] = [];
    const r = await withRepo(repoDir, 'shared', (repo) => backup(repo, [src], { sourceFs: source, onProgress: (p) => seen.push(p.bytesDone, p.bytesRead) }));
    expect(source.directReadBytes).toBe(8 * MiB);
    expect(r.summary.warnings).toBe(0);
    expect(r.summary.bytesRead).toBe(image.length);
    expect(Math.max(...seen)).toBe(image.length);
    const out = path.join(dir, 'out');
    await withRepo(repoDir, 'shared', (repo) => restore(repo, r.id, { target: out }));
    expect(fs.readFileSync(path.join(out, 'src', 'disk.img')).equals(image)).toBe(true);
  });

  it('keeps a file readable by its owner alone until it is written, then gives it its mode', async () => {
    const src = path.join(dir, 'src');
    writeTree(src, { 'public.bin': randomData(6 * 1024 * 1024) });
    fs.chmodSync(path.join(src, 'public.bin'), 0o644);
    const r = await withRepo(repoDir, 'shared', (repo) => backup(repo, [src]));
    const out = path.join(dir, 'out');
    const seen: number[] = [];
    await withRepo(repoDir, 'shared', (repo) =>
      restore(repo, r.id, {
        target: out,
        onProgress: () => {
          const d = path.join(out, 'src');
          for (const n of fs.existsSync(d) ? fs.readdirSync(d) : []) if (n.includes('.tmp-')) seen.push(fs.lstatSync(path.join(d, n)).mode & 0o777);
        },
      }),
    );
    expect(seen.length).toBeGreaterThan(0);
    expect(seen.every((m) => (m & 0o077) === 0)).toBe(true);
    expect(fs.statSync(path.join(out, 'src', 'public.bin')).mode & 0o777).toBe(0o644);
  });

  it('restores a sparse file sparse, and stores none of its zeros', async () => {
    const img = path.join(dir, 'disk.img');
    const fd = fs.openSync(img, 'w');
    fs.writeSync(fd, randomData(100_000), 0, 100_000, 5 << 20);
    fs.ftruncateSync(fd, 64 << 20);
    fs.closeSync(fd);
    const r = await withRepo(repoDir, 'shared', (repo) => backup(repo, [img]));
    expect(r.summary.bytesNew).toBeLessThan(2 << 20);
    const out = path.join(dir, 'out');
    await withRepo(repoDir, 'shared', (repo) => restore(repo, r.id, { target: out }));
    const back = path.join(out, 'disk.img');
    expect(fs.readFileSync(back).equals(fs.readFileSync(img))).toBe(true);
    expect(fs.statSync(back).blocks * 512).toBeLessThan(4 << 20);
  });

  it('stores a second backup of unchanged data as nothing new, and a shifted file as few new chunks', async () => {
    const src = path.join(dir, 'src');
    const data = randomData(2 << 20);
    writeTree(src, { 'big.bin': data, 'copy.bin': data });
    const first = await withRepo(repoDir, 'shared', (repo) => backup(repo, [src]));
    expect(first.summary.bytesNew).toBeLessThan(data.length * 1.05); // the copy deduplicates within the backup
    const again = await withRepo(repoDir, 'shared', (repo) => backup(repo, [src]));
    expect(again.summary.chunksNew).toBe(0);
    writeTree(src, { 'big.bin': Buffer.concat([Buffer.from('a few inserted bytes'), data]) });
    const shifted = await withRepo(repoDir, 'shared', (repo) => backup(repo, [src]));
    expect(shifted.summary.bytesNew).toBeLessThan(400_000);
    const out = path.join(dir, 'out');
    await withRepo(repoDir, 'shared', (repo) => restore(repo, shifted.id, { target: out, verify: true }));
    expect(snapshotTree(path.join(out, 'src'))).toEqual(snapshotTree(src));
  });

  it('compresses compressible chunks and stores random ones as they are', async () => {
    const src = path.join(dir, 'src');
    writeTree(src, { 'text.log': textData(1 << 20) });
    const text = await withRepo(repoDir, 'shared', (repo) => backup(repo, [src]));
    expect(text.summary.bytesStored).toBeLessThan(text.summary.bytesNew / 2);
    writeTree(src, { 'rand.bin': randomData(1 << 20) });
    const before = packBytes();
    const rand = await withRepo(repoDir, 'shared', (repo) => backup(repo, [src]));
    expect(rand.summary.bytesStored).toBe(rand.summary.bytesNew);
    expect(packBytes() - before).toBeGreaterThanOrEqual(1 << 20);
  });

  it('writes nothing in a dry run but counts what would be added', async () => {
    const src = path.join(dir, 'src');
    writeTree(src, { f: randomData(500_000) });
    const r = await withRepo(repoDir, 'shared', (repo) => backup(repo, [src], { dryRun: true }));
    expect(r.summary.bytesNew).toBe(500_000);
    expect(packBytes()).toBe(0);
    expect(fs.readdirSync(path.join(repoDir, 'snapshots'))).toEqual([]);
    expect(fs.readdirSync(path.join(repoDir, 'index'))).toEqual([]);
  });

  it('skips an unreadable file with a warning and backs up the rest', async () => {
    const src = path.join(dir, 'src');
    writeTree(src, { ok: 'fine' });
    // Readable only in name: reading it fails with EINVAL, even as root.
    const r = await withRepo(repoDir, 'shared', (repo) => backup(repo, [src, '/proc/self/clear_refs']));
    expect(r.summary.warnings).toBe(1);
    expect(r.warnings[0]!.path).toBe('/proc/self/clear_refs');
    expect(r.manifest.entries.map((e) => e.path)).toEqual(['src', 'src/ok']);
  });

  it('never backs up the repository into itself', async () => {
    writeTree(path.join(dir, 'f'), { x: 'y' });
    const r = await withRepo(repoDir, 'shared', (repo) => backup(repo, [dir]));
    expect(r.manifest.entries.map((e) => e.path).filter((p) => p.split('/').includes('repo'))).toEqual([]);
    expect(r.manifest.entries.map((e) => e.path)).toContain(`${path.basename(dir)}/f/x`);
    expect(r.summary.skipped).toBe(1);
  });

  it('refuses two sources with the same name, and an unknown backup', async () => {
    writeTree(path.join(dir, 'a/x'), { f: '1' });
    writeTree(path.join(dir, 'b/x'), { f: '2' });
    await expect(withRepo(repoDir, 'shared', (repo) => backup(repo, [path.join(dir, 'a/x'), path.join(dir, 'b/x')]))).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(withRepo(repoDir, 'shared', (repo) => repo.resolveBackup('abcdef12'))).rejects.toMatchObject({ code: 'BACKUP_NOT_FOUND' });
    await expect(Repository.open(path.join(dir, 'nope'))).rejects.toMatchObject({ code: 'REPO_NOT_FOUND' });
  });

  it('works the same on the in-memory file system', async () => {
    const mem = new MemoryFileSystem();
    await mem.mkdirp('/src/sub');
    const files: Record<string, Buffer> = { '/src/a': textData(200_000), '/src/sub/b': randomData(90_000), '/src/e': Buffer.alloc(0) };
    for (const [p, d] of Object.entries(files)) {
      const h = await mem.open(p, 'createExclusive');
      await h.write([d], 0);
      await h.close();
    }
    await Repository.init('/repo', { fs: mem, packSize: 1 << 20 });
    const repo = await Repository.open('/repo', { fs: mem, lock: 'shared' });
    try {
      const r = await backup(repo, ['/src'], { sourceFs: mem });
      await restore(repo, r.id, { target: '/out', fs: mem, verify: true });
      for (const [p, d] of Object.entries(files)) expect(Buffer.from(mem.readFileSync(`/out${p}`)).equals(d)).toBe(true);
    } finally {
      await repo.close();
    }
  });

  it('needs a lock to back up', async () => {
    const repo = await Repository.open(repoDir, { lock: false });
    try {
      await expect(backup(repo, [dir])).rejects.toBeInstanceOf(DeltaDiskError);
    } finally {
      await repo.close();
    }
  });
});
