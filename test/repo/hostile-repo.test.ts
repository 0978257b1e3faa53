/**
 * A damaged or crafted repository, read by everything but restore (whose side is in
 * restore-safety and restore-robustness): what check must report, what prune must
 * refuse or spare, and work that must stay bounded whatever a manifest claims.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { backup, checkRepository, diffBackups, Disk, prune, Repository, repositoryStats, restore, type Entry } from '../../lib/index.js';
import type { Content } from '../../lib/format/manifest.js';
import { BlobKind } from '../../lib/format/pack-header.js';
import { LIST_BLOB_HASHES } from '../../lib/format/repo-limits.js';
import { ChunkIndex } from '../../lib/repo/chunk-index.js';
import { PackWriter, sha256 } from '../../lib/repo/pack-writer.js';
import { decodeIndexFile, encodeIndexFile, indexNameOf } from '../../lib/format/index-file.js';
import { contentOf, craftBackup } from '../helpers/craft.js';
import { randomData, snapshotTree, withRepo, writeTree } from '../helpers/repo.js';
import { tempDir } from '../helpers/temp-dir.js';

let dir: string;
let cleanup: () => void;
let repoDir: string;

beforeEach(async () => {
  ({ dir, cleanup } = tempDir('deltadisk-hostile-'));
  repoDir = path.join(dir, 'repo');
  await Repository.init(repoDir, { packSize: 1 << 20, cdc: { min: 16 * 1024, avg: 64 * 1024, max: 256 * 1024 } });
});
afterEach(() => cleanup());

const src = (): string => path.join(dir, 'src');

function packFiles(): string[] {
  const root = path.join(repoDir, 'packs');
  return fs.readdirSync(root).flatMap((s) => fs.readdirSync(path.join(root, s)).map((f) => path.join(root, s, f))).sort();
}

describe('a manifest that is not a regular file', () => {
  for (const kind of ['symlink', 'directory'] as const) {
    it(`(${kind}) is damage: check reports it and prune deletes nothing`, async () => {
      writeTree(src(), { a: randomData(200_000) });
      const a = await withRepo(repoDir, 'shared', (repo) => backup(repo, [src()]));
      const tree = snapshotTree(src());
      const manifest = path.join(repoDir, 'snapshots', a.id);
      // The manifest moved elsewhere and linked back (a copy made with links), or lost.
      const moved = path.join(dir, 'moved-manifest');
      fs.renameSync(manifest, moved);
      if (kind === 'symlink') fs.symlinkSync(moved, manifest);
      else fs.mkdirSync(manifest);

      const r = await withRepo(repoDir, 'shared', (repo) => checkRepository(repo, { readData: true }));
      expect(r.errors.map((p) => p.kind)).toContain('damaged-manifest');

      const packsBefore = packFiles();
      await expect(withRepo(repoDir, 'maintenance', (repo) => prune(repo))).rejects.toMatchObject({ code: 'REPO_CORRUPT' });
      expect(packFiles()).toEqual(packsBefore);

      // Put back, the backup is whole.
      fs.rmSync(manifest, { recursive: true });
      fs.renameSync(moved, manifest);
      const out = path.join(dir, 'out');
      await withRepo(repoDir, 'shared', (repo) => restore(repo, a.id, { target: out, verify: true }));
      expect(snapshotTree(path.join(out, 'src'))).toEqual(tree);
    });
  }
});

describe('prune finding a damaged chunk while repacking', () => {
  it('keeps every other copy of that chunk', async () => {
    // Files below the minimum chunk size: one chunk each, named by the file's hash.
    const x = randomData(10_000);
    writeTree(src(), { x, y: randomData(10_000) });
    const first = await withRepo(repoDir, 'shared', (repo) => backup(repo, [src()]));
    fs.unlinkSync(path.join(src(), 'y'));
    const kept = await withRepo(repoDir, 'shared', (repo) => backup(repo, [src()]));
    const tree = snapshotTree(src());
    const [withXY] = packFiles();
    // A second copy of x's chunk in a pack of its own (as two backups racing store it).
    const { content, blob } = contentOf(x);
    const entries: Entry[] = [{ type: 'file', path: 'x', mode: 0o644, mtimeMs: 0, size: x.length, content }];
    const extra = await withRepo(repoDir, 'shared', (repo) => craftBackup(repo, entries, [blob]));
    const onlyX = packFiles().find((p) => p !== withXY)!;
    // One index file listing the pack of x and y first, so its copy of x is the one
    // readers prefer.
    const indexDir = path.join(repoDir, 'index');
    const packs = fs.readdirSync(indexDir).flatMap((n) => decodeIndexFile(fs.readFileSync(path.join(indexDir, n)), n));
    packs.sort((a, b) => (a.name === path.basename(withXY!) ? -1 : b.name === path.basename(withXY!) ? 1 : 0));
    for (const n of fs.readdirSync(indexDir)) fs.unlinkSync(path.join(indexDir, n));
    const bytes = encodeIndexFile(packs);
    fs.writeFileSync(path.join(indexDir, indexNameOf(bytes)), bytes);
    // Only `kept` remains: the pack of x and y is half unused (a repack candidate),
    // the other holds nothing but a copy of x, which no reader prefers.
    fs.unlinkSync(path.join(repoDir, 'snapshots', first.id));
    fs.unlinkSync(path.join(repoDir, 'snapshots', extra));
    // The preferred copy of x goes bad.
    const offsetOfX = await withRepo(repoDir, 'shared', async (repo) => {
      const index = await repo.loadIndex();
      const id = index.find(blob.hash);
      expect(index.packName(index.packOf(id))).toBe(path.basename(withXY!));
      return index.offsetOf(id);
    });
    const fd = fs.openSync(withXY!, 'r+');
    fs.writeSync(fd, Buffer.from([0xff, 0x00, 0xff]), 0, 3, offsetOfX + 100);
    fs.closeSync(fd);

    const notes: string[] = [];
    await withRepo(repoDir, 'maintenance', (repo) => prune(repo, { onNote: (n) => notes.push(n) }));
    expect(notes.some((n) => n.startsWith('not repacking pack'))).toBe(true);
    // The good copy is still there: check finds the backup whole (and marks the
    // damaged pack, so readers turn to the good copy), and it restores.
    expect(fs.existsSync(onlyX)).toBe(true);
    const r = await withRepo(repoDir, 'shared', (repo) => checkRepository(repo, { readData: true }));
    expect(r.failedBackups).toEqual([]);
    const out = path.join(dir, 'out');
    await withRepo(repoDir, 'shared', (repo) => restore(repo, kept.id, { target: out, verify: true }));
    expect(snapshotTree(path.join(out, 'src'))).toEqual(tree);
  });
});

describe('prune finding two damaged chunks in one pack while repacking', () => {
  it('keeps the other copies of both, each in a pack of its own', async () => {
    const x = randomData(10_000);
    const z = randomData(10_000);
    writeTree(src(), { x, z, y: randomData(10_000) });
    const first = await withRepo(repoDir, 'shared', (repo) => backup(repo, [src()]));
    fs.unlinkSync(path.join(src(), 'y'));
    const kept = await withRepo(repoDir, 'shared', (repo) => backup(repo, [src()]));
    const tree = snapshotTree(src());
    const [withXYZ] = packFiles();
    // A second copy of x in one pack, of z in another.
    const copies: string[] = [];
    const crafted: string[] = [];
    for (const data of [x, z]) {
      const before = packFiles();
      const { content, blob } = contentOf(data);
      const entries: Entry[] = [{ type: 'file', path: 'c', mode: 0o644, mtimeMs: 0, size: data.length, content }];
      crafted.push(await withRepo(repoDir, 'shared', (repo) => craftBackup(repo, entries, [blob])));
      copies.push(packFiles().find((p) => !before.includes(p))!);
    }
    // One index file listing the pack of x, y and z first: its copies are preferred.
    const indexDir = path.join(repoDir, 'index');
    const packs = fs.readdirSync(indexDir).flatMap((n) => decodeIndexFile(fs.readFileSync(path.join(indexDir, n)), n));
    packs.sort((a, b) => (a.name === path.basename(withXYZ!) ? -1 : b.name === path.basename(withXYZ!) ? 1 : 0));
    for (const n of fs.readdirSync(indexDir)) fs.unlinkSync(path.join(indexDir, n));
    const bytes = encodeIndexFile(packs);
    fs.writeFileSync(path.join(indexDir, indexNameOf(bytes)), bytes);
    fs.unlinkSync(path.join(repoDir, 'snapshots', first.id));
    for (const id of crafted) fs.unlinkSync(path.join(repoDir, 'snapshots', id));
    // Both preferred copies go bad.
    const offsets = await withRepo(repoDir, 'shared', async (repo) => {
      const index = await repo.loadIndex();
      return [x, z].map((data) => {
        const id = index.find(contentOf(data).blob.hash);
        expect(index.packName(index.packOf(id))).toBe(path.basename(withXYZ!));
        return index.offsetOf(id);
      });
    });
    const fd = fs.openSync(withXYZ!, 'r+');
    for (const at of offsets) fs.writeSync(fd, Buffer.from([0xff, 0x00, 0xff]), 0, 3, at + 100);
    fs.closeSync(fd);

    await withRepo(repoDir, 'maintenance', (repo) => prune(repo));
    for (const c of copies) expect(fs.existsSync(c), c).toBe(true);
    const r = await withRepo(repoDir, 'shared', (repo) => checkRepository(repo, { readData: true }));
    expect(r.failedBackups).toEqual([]);
    const out = path.join(dir, 'out');
    await withRepo(repoDir, 'shared', (repo) => restore(repo, kept.id, { target: out, verify: true }));
    expect(snapshotTree(path.join(out, 'src'))).toEqual(tree);
  });
});

describe('a list blob named many times', () => {
  it('is read once by check, prune, stats and diff', async () => {
    // A manifest of a few kilobytes naming one list blob 64 times (2^18 times fits
    // in a manifest: read each time, 128 GiB).
    const chunk = randomData(4096);
    const chunkHash = sha256(chunk);
    const page = Buffer.concat(Array.from({ length: LIST_BLOB_HASHES }, () => chunkHash));
    const listHash = sha256(page);
    const ids = await withRepo(repoDir, 'shared', async (repo) => {
      const writer = new PackWriter(repo.backend, await repo.loadIndex(), { packSize: repo.config.packSize });
      await writer.add(chunkHash, chunk, BlobKind.DATA);
      await writer.add(listHash, page, BlobKind.LIST);
      await writer.flush();
      const out: string[] = [];
      for (const lists of [64, 63]) {
        const count = lists * LIST_BLOB_HASHES;
        const content: Content = { count, size: count * 4096, chunkSize: 4096, lists: Array.from({ length: lists }, () => listHash) };
        out.push(await craftBackup(repo, [{ type: 'file', path: 'big.img', mode: 0o644, mtimeMs: 0, size: content.size, content }]));
      }
      return out;
    });
    const counting = async <T>(lock: 'shared' | 'maintenance', fn: (repo: Repository) => Promise<T>): Promise<{ value: T; reads: number }> =>
      withRepo(repoDir, lock, async (repo) => {
        let reads = 0;
        const read = repo.readBlob.bind(repo);
        repo.readBlob = (index, id) => {
          reads++;
          return read(index, id);
        };
        return { value: await fn(repo), reads };
      });
    const checked = await counting('shared', (repo) => checkRepository(repo));
    expect(checked.value.errors).toEqual([]);
    expect(checked.reads).toBeLessThanOrEqual(2); // the full page, and the same blob as a last page
    const stats = await counting('shared', (repo) => repositoryStats(repo));
    expect(stats.value.chunks).toBe(2);
    expect(stats.reads).toBeLessThanOrEqual(2);
    expect((await counting('shared', (repo) => diffBackups(repo, ids[0]!, ids[1]!))).reads).toBeLessThanOrEqual(2);
    const pruned = await counting('maintenance', (repo) => prune(repo));
    expect(pruned.value.packsDeleted).toBe(0);
    expect(pruned.reads).toBeLessThanOrEqual(4); // planning, and the check again before deleting
  });
});

describe('check of a repository that lost a pack', () => {
  it('finds the other copies of its chunks in one pass over the index, not one scan per chunk', async () => {
    const files = Array.from({ length: 300 }, () => contentOf(randomData(200)));
    const entry = (i: number): Entry => ({ type: 'file', path: `f${i}`, mode: 0o644, mtimeMs: 0, size: 200, content: files[i]!.content });
    const [all, some] = await withRepo(repoDir, 'shared', async (repo) => [
      await craftBackup(repo, files.map((_, i) => entry(i)), files.map((f) => f.blob)),
      // A third of the chunks stored again, in a pack of their own.
      await craftBackup(repo, files.slice(0, 100).map((_, i) => entry(i)), files.slice(0, 100).map((f) => f.blob)),
    ]);
    const lost = packFiles().find((p) => fs.statSync(p).size > 300 * 200)!;
    fs.unlinkSync(lost);
    // A scan of the whole index per chunk of the lost pack (and per backup naming it)
    // is quadratic: ~3 ms a chunk with a million entries.
    const scans = vi.spyOn(ChunkIndex.prototype, 'entriesWithHash');
    try {
      const r = await withRepo(repoDir, 'shared', (repo) => checkRepository(repo));
      expect(r.failedBackups).toEqual([all]);
      expect(r.failedBackups).not.toContain(some);
      expect(r.errors.find((p) => p.backup === all)?.message).toContain('(and 199 more)');
      expect(scans).not.toHaveBeenCalled();
    } finally {
      scans.mockRestore();
    }
  });
});

describe('a verification or damage record that is not a regular file', () => {
  it('still marks: the backup stays failed and is never a base, the pack stays damaged', async () => {
    const disk = path.join(src(), 'disk.chain');
    fs.mkdirSync(src(), { recursive: true });
    const d = await Disk.create(disk, { size: 4 << 20, blockSize: 64 * 1024 });
    await d.write(0, randomData(1 << 20));
    await d.close();
    const first = await withRepo(repoDir, 'shared', (repo) => backup(repo, [src()]));
    // A check marked the first backup failed; the record became a directory (or a
    // link) by whatever damaged the repository. Its name alone still says "failed".
    fs.mkdirSync(path.join(repoDir, 'verify', first.id), { recursive: true });
    const listed = await withRepo(repoDir, false, (repo) => repo.listBackups());
    expect(listed.find((b) => b.id === first.id)!.failed).toBe(true);
    expect((await withRepo(repoDir, false, (repo) => repo.verifyRecords())).has(first.id)).toBe(true);

    const again = await Disk.open(disk);
    await again.write(0, randomData(64 * 1024));
    await again.close();
    const second = await withRepo(repoDir, 'shared', (repo) => backup(repo, [src()]));
    const chain = second.manifest.entries.find((e) => e.type === 'chain')!;
    expect(chain.type === 'chain' && chain.chain.base).toBe(null);

    const pack = path.basename(packFiles()[0]!);
    fs.symlinkSync('/dev/null', path.join(repoDir, 'damaged', pack));
    expect(await withRepo(repoDir, false, (repo) => repo.markedNames('damage'))).toContain(pack);
  });
});
