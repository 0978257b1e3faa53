/**
 * The index cache on real repositories: a backup stores it and the next one starts
 * from it (reading only index files it does not cover); it is never used once an
 * index file it covers is gone (prune), under other condemned or bad marks, damaged,
 * or for another repository; caches unused for 30 days are forgotten; and a cache
 * that cannot be written costs the backup nothing.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { backup, checkRepository, Disk, forget, prune, Repository, restore } from '../../lib/index.js';
import { ChunkIndex } from '../../lib/repo/chunk-index.js';
import { nodeFileSystem } from '../../lib/io/node-file-system.js';
import { avoidDigest, IndexCache } from '../../lib/repo/index-cache.js';
import { randomData, snapshotTree, writeTree } from '../helpers/repo.js';
import { tempDir } from '../helpers/temp-dir.js';

let dir: string;
let cleanup: () => void;
let repoDir: string;
let cacheDir: string;

beforeEach(async () => {
  ({ dir, cleanup } = tempDir('deltadisk-idxcache-'));
  repoDir = path.join(dir, 'repo');
  cacheDir = path.join(dir, 'cache', 'nested');
  await Repository.init(repoDir, { packSize: 1 << 20, cdc: { min: 16 * 1024, avg: 64 * 1024, max: 256 * 1024 } });
});
afterEach(() => cleanup());

async function withRepo<T>(lock: 'shared' | 'maintenance' | false, fn: (r: Repository) => Promise<T>, cache = true): Promise<T> {
  const repo = await Repository.open(repoDir, { lock, purpose: 'test', ...(cache ? { cacheDir } : {}) });
  try {
    return await fn(repo);
  } finally {
    await repo.close();
  }
}

const indexFiles = (): string[] => fs.readdirSync(path.join(repoDir, 'index')).sort();
const cacheFile = async (): Promise<string> => withRepo(false, async (r) => path.join(cacheDir, `${r.config.id}.index`));

/** Backs up directory `name`, holding exactly `files`. */
async function backUp(name: string, files: Record<string, Uint8Array>, cache = true) {
  const src = path.join(dir, name);
  fs.rmSync(src, { recursive: true, force: true });
  writeTree(src, files);
  return withRepo('shared', (repo) => backup(repo, [src]), cache);
}

async function cleanCheck(): Promise<void> {
  const r = await withRepo('shared', (repo) => checkRepository(repo, { readData: true }), false);
  expect(r.errors).toEqual([]);
}

/** Rewrites an index file in place with other bytes of the same length: name and size still match. */
function spoilIndexFile(name: string): void {
  const p = path.join(repoDir, 'index', name);
  const b = fs.readFileSync(p);
  b[b.length - 1]! ^= 0xff;
  fs.writeFileSync(p, b);
}

describe('index cache', () => {
  it('is stored by a backup and stands in for the index files it covers', async () => {
    const a = randomData(300_000);
    await backUp('one', { 'a.bin': a });
    const file = await cacheFile();
    expect(fs.existsSync(file)).toBe(true);
    const [only] = indexFiles();
    // The cache covers that index file: a backup no longer reads it (spoiled, it
    // would fail to load), while a plain load and check still do.
    spoilIndexFile(only!);
    const fromCache = await withRepo('shared', (r) => r.loadIndex({ useCache: true }));
    expect(fromCache.entryCount).toBeGreaterThan(0);
    await expect(withRepo('shared', (r) => r.loadIndex())).rejects.toMatchObject({ code: 'REPO_CORRUPT' });
    await expect(withRepo('shared', (r) => r.loadIndex({ useCache: true }), false)).rejects.toMatchObject({ code: 'REPO_CORRUPT' });
    // A backup of the same data through the cache stores nothing new.
    const again = await backUp('two', { 'a.bin': a });
    expect(again.summary.bytesNew).toBe(0);
  });

  it('reads the index files written since by others, and dedups against them', async () => {
    await backUp('one', { 'a.bin': randomData(200_000) });
    const b = randomData(250_000);
    // Another machine (no cache here) adds a backup: one more index file.
    await backUp('two', { 'b.bin': b }, false);
    expect(indexFiles()).toHaveLength(2);
    const third = await backUp('three', { 'b.bin': b });
    expect(third.summary.bytesNew).toBe(0);
    // The cache now covers both files and the third backup's (none: nothing new).
    const c = new IndexCache(nodeFileSystem, cacheDir, await withRepo(false, async (r) => r.config.id));
    const hit = await c.load(indexFiles(), avoidDigest([], []));
    expect([...(hit?.covered.keys() ?? [])].sort()).toEqual(indexFiles());
    // It knows their sizes: a backup with the cache stats none of them.
    for (const [name, size] of hit!.covered) expect(size).toBe(fs.statSync(path.join(repoDir, 'index', name)).size);
    await cleanCheck();
  });

  it('is not used once a prune replaced an index file it covers: a backup stores the pruned data again', async () => {
    const a = randomData(400_000);
    await backUp('src', { 'a.bin': a });
    await backUp('src', { 'b.bin': randomData(100_000) });
    await withRepo('maintenance', (repo) => forget(repo, { keepLast: 1 }), false);
    const pruned = await withRepo('maintenance', (repo) => prune(repo, {}), false);
    expect(pruned.completed).toBe(true);
    expect(pruned.indexFilesDeleted).toBeGreaterThan(0);
    expect(pruned.packsDeleted).toBeGreaterThan(0);
    // The cache still names a's chunks; the index files it covers are gone.
    const again = await backUp('three', { 'a.bin': a });
    expect(again.summary.bytesNew).toBeGreaterThanOrEqual(a.length);
    await cleanCheck();
    const out = path.join(dir, 'out');
    await withRepo('shared', (repo) => restore(repo, again.id, { target: out, verify: true }), false);
    expect(snapshotTree(path.join(out, 'three'))).toEqual(snapshotTree(path.join(dir, 'three')));
  });

  it('is not used under other marks, when damaged, or for another repository', async () => {
    await backUp('one', { 'a.bin': randomData(200_000) });
    const id = await withRepo(false, async (r) => r.config.id);
    const listed = indexFiles();
    const c = new IndexCache(nodeFileSystem, cacheDir, id);
    expect(await c.load(listed, avoidDigest([], []))).toBeDefined();
    // Condemned or bad packs change which copy is preferred.
    expect(await c.load(listed, avoidDigest(['ab'.repeat(32)], []))).toBeUndefined();
    expect(await c.load(listed, avoidDigest([], ['ab'.repeat(32)]))).toBeUndefined();
    // An index file it covers is no longer listed (a prune replaced it).
    expect(await c.load(listed.slice(1), avoidDigest([], []))).toBeUndefined();
    // Another repository's id.
    fs.copyFileSync(c.file, path.join(cacheDir, `${'0'.repeat(32)}.index`));
    expect(await new IndexCache(nodeFileSystem, cacheDir, '0'.repeat(32)).load(listed, avoidDigest([], []))).toBeUndefined();
    // Damaged: any byte.
    const good = fs.readFileSync(c.file);
    for (const at of [0, 9, 20, Math.floor(good.length / 2), good.length - 1]) {
      const bad = Buffer.from(good);
      bad[at]! ^= 0x40;
      fs.writeFileSync(c.file, bad);
      expect(await c.load(listed, avoidDigest([], [])), `byte ${at}`).toBeUndefined();
    }
    fs.writeFileSync(c.file, good.subarray(0, good.length - 100));
    expect(await c.load(listed, avoidDigest([], []))).toBeUndefined();
    // A damaged cache is replaced by the next backup.
    await backUp('two', { 'b.bin': randomData(10_000) });
    expect(await c.load(indexFiles(), avoidDigest([], []))).toBeDefined();
  });

  it('vouches for the backup that stored it: the next incremental chain backup looks none of its chunks up, unless a mark changed', async () => {
    const diskPath = path.join(dir, 'vm', 'disk.chain');
    fs.mkdirSync(path.dirname(diskPath));
    const BS = 64 * 1024;
    const d = await Disk.create(diskPath, { size: 8 << 20, blockSize: BS });
    await d.write(0, randomData(4 << 20));
    await d.close();
    const change = async (blocks: number[]): Promise<Buffer> => {
      const x = await Disk.open(diskPath);
      for (const b of blocks) await x.write(b * BS + 9, randomData(100));
      const state = await x.read(0, x.virtualSize);
      await x.close();
      return state;
    };
    /** Backs the disk up, counting the chunk lookups of its unchanged chunks, and checks the restore. */
    const backUpDisk = async (state: Buffer) => {
      const lookups = vi.spyOn(ChunkIndex.prototype, 'usableInPage');
      const r = await withRepo('shared', (repo) => backup(repo, [diskPath]));
      const looked = lookups.mock.calls.length;
      vi.restoreAllMocks();
      const out = path.join(dir, `out-${r.id}`);
      await withRepo('shared', (repo) => restore(repo, r.id, { target: out, flatten: true, verify: true }), false);
      expect(fs.readFileSync(path.join(out, 'disk.raw')).equals(state)).toBe(true);
      return { r, looked };
    };
    await backUpDisk(await change([]));
    const second = await backUpDisk(await change([1, 40]));
    expect(second.r.summary.chunksNew).toBe(2);
    expect(second.looked).toBe(0);
    const vouched = await withRepo(false, async (r) => r.vouchesFor(await r.loadIndex({ useCache: true }), second.r.id));
    expect(vouched).toBe(true);
    // A pack marked bad changes the marks the cache was built under: it is not
    // used, and the next backup looks its base's chunks up; those in the bad pack
    // are stored again, not reused.
    const packs = fs.readdirSync(path.join(repoDir, 'packs')).flatMap((p) => fs.readdirSync(path.join(repoDir, 'packs', p)).map((f) => path.join(repoDir, 'packs', p, f)));
    const largest = packs.sort((a, b) => fs.statSync(b).size - fs.statSync(a).size)[0]!; // the first backup's data
    fs.writeFileSync(path.join(repoDir, 'damaged', path.basename(largest)), '');
    const third = await backUpDisk(await change([2]));
    expect(third.looked).toBeGreaterThan(0);
    expect(third.r.summary.chunksNew).toBeGreaterThan(1);
  });

  it('lists by name what a stat-based listing lists: regular files only', async () => {
    const first = await backUp('one', { 'a.bin': randomData(100_000) });
    const second = await backUp('two', { 'b.bin': randomData(100_000) });
    // Entries named like a manifest and an index file that are not regular files.
    const fake = 'f'.repeat(32);
    fs.mkdirSync(path.join(repoDir, 'snapshots', fake));
    fs.symlinkSync(path.join(repoDir, 'snapshots', first.id), path.join(repoDir, 'snapshots', 'e'.repeat(32)));
    fs.mkdirSync(path.join(repoDir, 'index', 'd'.repeat(64)));
    await withRepo(false, async (r) => {
      for (const kind of ['snapshot', 'index'] as const) {
        expect(await r.backend.listNames(kind)).toEqual((await r.backend.list(kind)).map((f) => f.name));
      }
      expect((await r.backend.listNames('snapshot')).sort()).toEqual([first.id, second.id].sort());
      expect(await r.backend.size('snapshot', fake)).toBeUndefined();
    });
    // A backup and the listings that read every manifest go on as if they were not there.
    const third = await backUp('three', { 'c.bin': randomData(50_000) });
    expect(third.warnings).toEqual([]);
    expect((await withRepo('shared', (r) => r.listBackups())).map((b) => b.id).sort()).toEqual([first.id, second.id, third.id].sort());
  });

  it('forgets the caches of repositories unused for 30 days, and leftover temporaries', async () => {
    fs.mkdirSync(cacheDir, { recursive: true });
    const at = (name: string, daysAgo: number): string => {
      const p = path.join(cacheDir, name);
      fs.writeFileSync(p, 'x');
      const t = new Date(Date.now() - daysAgo * 24 * 3600 * 1000);
      fs.utimesSync(p, t, t);
      return name;
    };
    const stale = at(`${'a'.repeat(32)}.index`, 40);
    const recent = at(`${'b'.repeat(32)}.index`, 10);
    const oldTemp = at(`${'c'.repeat(32)}.index.tmp-0123456789ab`, 2);
    const newTemp = at(`${'d'.repeat(32)}.index.tmp-0123456789ab`, 0);
    const other = at('cli-0000000000000000-v20.0.0-x64.v8', 400);
    await backUp('one', { 'a.bin': randomData(50_000) });
    const own = path.basename(await cacheFile());
    expect(fs.readdirSync(cacheDir).sort()).toEqual([own, recent, newTemp, other].sort());
    expect([stale, oldTemp].some((n) => fs.existsSync(path.join(cacheDir, n)))).toBe(false);
  });

  it('that cannot be written does not fail the backup', async () => {
    fs.mkdirSync(path.dirname(cacheDir), { recursive: true });
    fs.writeFileSync(cacheDir, 'a file where the cache directory should be');
    const r = await backUp('one', { 'a.bin': randomData(100_000) });
    expect(r.warnings).toEqual([]);
    await cleanCheck();
  });
});
