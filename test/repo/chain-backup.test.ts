/**
 * Backing up our own chains: the anchor snapshot, incremental reads from the chain's
 * change map (counting the bytes read), fallback to a full read, never building on a
 * backup that failed verification, and restores as a working chain with the same
 * snapshots (branches included) or flattened.
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { backup, checkRepository, Disk, prune, Repository, restore, type ChainEntry } from '../../lib/index.js';
import { nodeFileSystem } from '../../lib/io/node-file-system.js';
import { FaultFS } from '../harness/fault-fs.js';
import { Rng } from '../harness/rng.js';
import { withRepo } from '../helpers/repo.js';
import { tempDir } from '../helpers/temp-dir.js';

const MiB = 1 << 20;
const BS = 64 * 1024;
let dir: string;
let cleanup: () => void;
let repoDir: string;
let diskPath: string;

beforeEach(async () => {
  ({ dir, cleanup } = tempDir('deltadisk-chainbk-'));
  repoDir = path.join(dir, 'repo');
  await Repository.init(repoDir, { packSize: 2 * MiB });
  fs.mkdirSync(path.join(dir, 'vm'));
  diskPath = path.join(dir, 'vm', 'disk.chain');
});
afterEach(() => cleanup());

async function withDisk<T>(fn: (d: Disk) => Promise<T>, readOnly = false): Promise<T> {
  const d = await Disk.open(diskPath, { readOnly });
  try {
    return await fn(d);
  } finally {
    await d.close();
  }
}

function chainOf(r: { manifest: { entries: readonly { type: string }[] } }): ChainEntry {
  return r.manifest.entries.find((e) => e.type === 'chain') as ChainEntry;
}

const anchors = (d: Disk): string[] => d.snapshots().map((s) => s.name).filter((n) => n.startsWith('deltadisk-backup-'));

describe('chain backup', () => {
  it('reads only the changed blocks the second time, and keeps exactly one anchor', async () => {
    const d = await Disk.create(diskPath, { size: 32 * MiB, blockSize: BS });
    await d.write(0, randomBytes(16 * MiB));
    await d.close();
    const first = await withRepo(repoDir, 'shared', (repo) => backup(repo, [diskPath]));
    expect(first.summary.bytesRead).toBe(16 * MiB); // the zero half is known from the map: not read
    expect(chainOf(first).chain.base).toBeNull();
    const blocks = [3, 77, 130, 200, 255];
    await withDisk(async (x) => {
      for (const b of blocks) await x.write(b * BS + 100, randomBytes(1000));
      await x.flush();
    });
    const second = await withRepo(repoDir, 'shared', (repo) => backup(repo, [diskPath]));
    expect(second.summary.bytesRead).toBe(blocks.length * BS);
    expect(second.summary.chunksNew).toBe(blocks.length);
    expect(chainOf(second).chain.base).toBe(first.id);
    await withDisk(async (x) => {
      expect(anchors(x)).toEqual([`deltadisk-backup-${second.id}`]);
      const cur = await x.read(0, x.virtualSize);
      const out = path.join(dir, 'out');
      await withRepo(repoDir, 'shared', (repo) => restore(repo, second.id, { target: out, flatten: true, verify: true }));
      expect(fs.readFileSync(path.join(out, 'disk.raw')).equals(cur)).toBe(true);
    }, true);
  });

  it('names an unchanged list page of the previous backup again, without reading or hashing it', async () => {
    // Two list pages: chunks 0-16383 (the first GiB) and 16384-32767 (the second).
    const d = await Disk.create(diskPath, { size: 2 * 1024 * MiB, blockSize: BS });
    await d.write(0, randomBytes(MiB));
    await d.write(1536 * MiB, randomBytes(MiB));
    await d.close();
    // The index cache vouches for the backups that stored it (without one, every
    // page of the base is read: whether its chunks are usable is looked up).
    const cached = async <T>(fn: (repo: Repository) => Promise<T>): Promise<T> => {
      const repo = await Repository.open(repoDir, { lock: 'shared', purpose: 'test', cacheDir: path.join(dir, 'cache') });
      try {
        return await fn(repo);
      } finally {
        await repo.close();
      }
    };
    const first = await cached((repo) => backup(repo, [diskPath]));
    const before = chainOf(first).chain.capture.content.lists!;
    expect(before).toHaveLength(2);
    await withDisk(async (x) => {
      await x.write(3 * BS, randomBytes(BS));
      await x.flush();
    });
    let pagesRead = 0;
    const second = await cached((repo) => {
      const readBlob = repo.readBlob.bind(repo);
      repo.readBlob = (index, id) => {
        pagesRead++;
        return readBlob(index, id);
      };
      return backup(repo, [diskPath]);
    });
    expect(chainOf(second).chain.base).toBe(first.id);
    expect(second.summary.bytesRead).toBe(BS);
    const after = chainOf(second).chain.capture.content.lists!;
    expect(after[0]!.equals(before[0]!)).toBe(false);
    expect(after[1]!.equals(before[1]!)).toBe(true);
    expect(pagesRead).toBe(1); // the changed page's base, not the other
    const out = path.join(dir, 'out');
    await withRepo(repoDir, 'shared', (repo) => restore(repo, second.id, { target: out, verify: true }));
    const restored = await Disk.open(path.join(out, 'disk.chain'), { readOnly: true });
    try {
      await withDisk(async (x) => {
        for (const at of [0, 1024 * MiB, 1536 * MiB]) expect((await restored.read(at, MiB)).equals(await x.read(at, MiB)), `at ${at}`).toBe(true);
      }, true);
    } finally {
      await restored.close();
    }
    expect((await withRepo(repoDir, 'shared', (repo) => checkRepository(repo, { readData: true }))).errors).toEqual([]);
  });

  it('reads scattered changed blocks with a few reads of the layer holding them', async () => {
    const blocks = 512;
    const d = await Disk.create(diskPath, { size: blocks * BS, blockSize: BS });
    await d.write(0, randomBytes(blocks * BS));
    await d.close();
    await withRepo(repoDir, 'shared', (repo) => backup(repo, [diskPath]));
    const rng = new Rng(3);
    const changed = new Set<number>();
    while (changed.size < 100) changed.add(rng.int(0, blocks - 1));
    // Partial writes in random order: each block copied up whole into a record of its own.
    await withDisk(async (x) => {
      for (const b of changed) await x.write(b * BS + 512, randomBytes(4096));
      await x.flush();
    });
    const deltas = fs.readdirSync(path.join(dir, 'vm')).filter((f) => f.endsWith('.delta')).sort();
    const holding = path.join(dir, 'vm', deltas[deltas.length - 1]!); // the top layer: the anchor freezes it
    const traced = new FaultFS(nodeFileSystem, { trace: true });
    const second = await withRepo(repoDir, 'shared', (repo) => backup(repo, [diskPath], { sourceFs: traced }));
    expect(second.summary.bytesRead).toBe(changed.size * BS);
    const reads = traced.trace!.filter((t) => t === `read ${holding}`).length;
    // 100 chunks of 64 KiB, gathered 1 MiB a request (16 chunks) in the order they
    // were written: 7 reads; the rest are the layer's open and the older anchor's merge.
    expect(reads).toBeGreaterThan(0);
    expect(reads).toBeLessThanOrEqual(14);
    const out = path.join(dir, 'out');
    await withRepo(repoDir, 'shared', (repo) => restore(repo, second.id, { target: out, flatten: true, verify: true }));
    await withDisk(async (x) => expect(fs.readFileSync(path.join(out, 'disk.raw')).equals(await x.read(0, x.virtualSize))).toBe(true), true);
  });

  it('falls back to a full (deduplicated) read when the previous anchor is gone', async () => {
    const d = await Disk.create(diskPath, { size: 8 * MiB, blockSize: BS });
    await d.write(0, randomBytes(4 * MiB));
    await d.close();
    const first = await withRepo(repoDir, 'shared', (repo) => backup(repo, [diskPath]));
    await withDisk((x) => x.deleteSnapshot(`deltadisk-backup-${first.id}`));
    const second = await withRepo(repoDir, 'shared', (repo) => backup(repo, [diskPath]));
    expect(chainOf(second).chain.base).toBeNull();
    expect(second.summary.bytesRead).toBe(4 * MiB);
    expect(second.summary.chunksNew).toBe(0);
  });

  it('never builds on a backup that failed verification', async () => {
    const d = await Disk.create(diskPath, { size: 4 * MiB, blockSize: BS });
    await d.write(0, randomBytes(2 * MiB));
    await d.close();
    const first = await withRepo(repoDir, 'shared', (repo) => backup(repo, [diskPath]));
    // Damage one byte of data in the first backup's pack.
    const packs = fs.readdirSync(path.join(repoDir, 'packs')).flatMap((s) => fs.readdirSync(path.join(repoDir, 'packs', s)).map((f) => path.join(repoDir, 'packs', s, f)));
    const fd = fs.openSync(packs[0]!, 'r+');
    fs.writeSync(fd, Buffer.from([0xff ^ fs.readFileSync(packs[0]!)[1000]!]), 0, 1, 1000);
    fs.closeSync(fd);
    const report = await withRepo(repoDir, 'shared', (repo) => checkRepository(repo, { readData: true }));
    expect(report.failedBackups).toEqual([first.id]);
    const second = await withRepo(repoDir, 'shared', (repo) => backup(repo, [diskPath]));
    expect(chainOf(second).chain.base).toBeNull();
    expect(second.summary.bytesRead).toBe(2 * MiB);
    expect(second.summary.chunksNew).toBeGreaterThanOrEqual(1); // the damaged chunk is stored again
    const out = path.join(dir, 'out');
    await withRepo(repoDir, 'shared', (repo) => restore(repo, second.id, { target: out, verify: true }));
    // The older backup is healed too: its chunks now resolve to the new copies.
    const again = await withRepo(repoDir, 'shared', (repo) => checkRepository(repo, { readData: true }));
    expect(again.failedBackups).toEqual([]);
    expect(fs.readdirSync(path.join(repoDir, 'verify'))).toEqual([]);
    expect(fs.readdirSync(path.join(repoDir, 'damaged'))).toEqual([path.basename(packs[0]!)]);
    await withRepo(repoDir, 'shared', (repo) => restore(repo, first.id, { target: path.join(dir, 'out1'), verify: true }));
    // Nothing needs the damaged pack any more: prune removes it and its record.
    const pr = await withRepo(repoDir, 'maintenance', (repo) => prune(repo));
    expect(pr.packsDeleted).toBeGreaterThanOrEqual(1);
    expect(fs.existsSync(packs[0]!)).toBe(false);
    expect(fs.readdirSync(path.join(repoDir, 'damaged'))).toEqual([]);
    const clean = await withRepo(repoDir, 'shared', (repo) => checkRepository(repo, { readData: true }));
    expect(clean.errors).toEqual([]);
  });

  it('restores a working chain with the selected snapshots, branches included', async () => {
    const d = await Disk.create(diskPath, { size: 8 * MiB, blockSize: BS });
    await d.write(0, randomBytes(2 * MiB));
    await d.snapshot('base', 'installed');
    await d.write(2 * MiB, randomBytes(MiB));
    await d.snapshot('upgrade');
    await d.revert('base');
    await d.write(5 * MiB, randomBytes(MiB));
    await d.writeZeroes(0, BS); // a block zeroed on this branch
    await d.snapshot('experiment');
    await d.write(7 * MiB, randomBytes(BS));
    const want = new Map<string, Buffer>();
    for (const s of ['base', 'upgrade', 'experiment']) {
      const r = await d.openSnapshot(s);
      want.set(s, await r.read(0, r.virtualSize));
      await r.close();
    }
    want.set('current', await d.read(0, d.virtualSize));
    await d.close();
    const r = await withRepo(repoDir, 'shared', (repo) => backup(repo, [path.join(dir, 'vm')], { chainSnapshots: ['base', 'upgrade', 'experiment'] }));
    expect(r.manifest.entries.map((e) => e.path)).toEqual(['vm', 'vm/disk.chain']); // no delta files as files
    const out = path.join(dir, 'out');
    await withRepo(repoDir, 'shared', (repo) => restore(repo, r.id, { target: out, verify: true }));
    const back = await Disk.open(path.join(out, 'vm', 'disk.chain'), { readOnly: true });
    try {
      const snaps = back.snapshots();
      expect(snaps.map((s) => s.name).sort()).toEqual(['base', 'experiment', 'upgrade']);
      const byName = new Map(snaps.map((s) => [s.name, s]));
      expect(byName.get('upgrade')!.parent).toBe(byName.get('base')!.id);
      expect(byName.get('experiment')!.parent).toBe(byName.get('base')!.id);
      expect(byName.get('experiment')!.current).toBe(true);
      expect(byName.get('base')!.description).toBe('installed');
      for (const s of ['base', 'upgrade', 'experiment']) {
        const rd = await back.openSnapshot(s);
        expect((await rd.read(0, rd.virtualSize)).equals(want.get(s)!)).toBe(true);
        await rd.close();
      }
      expect((await back.read(0, back.virtualSize)).equals(want.get('current')!)).toBe(true);
    } finally {
      await back.close();
    }
    // A second backup reuses the unchanged snapshots without reading them.
    const again = await withRepo(repoDir, 'shared', (repo) => backup(repo, [diskPath], { chainSnapshots: 'all' }));
    expect(again.summary.bytesRead).toBe(0);
  });

  it('deletes its own anchor when the backup fails, and leaves the previous one', async () => {
    const d = await Disk.create(diskPath, { size: 4 * MiB, blockSize: BS });
    await d.write(0, randomBytes(MiB));
    await d.close();
    const first = await withRepo(repoDir, 'shared', (repo) => backup(repo, [diskPath]));
    await withDisk(async (x) => {
      await x.write(2 * MiB, randomBytes(MiB));
      await x.flush();
    });
    const failing = new FaultFS(nodeFileSystem).fail({ op: 'create', path: (p) => p.includes(`${path.sep}packs${path.sep}`) });
    const repo = await Repository.open(repoDir, { fs: failing, lock: 'shared' });
    try {
      await expect(backup(repo, [diskPath])).rejects.toMatchObject({ code: 'IO_ERROR' });
    } finally {
      await repo.close();
    }
    await withDisk(async (x) => expect(anchors(x)).toEqual([`deltadisk-backup-${first.id}`]), true);
    expect(fs.readdirSync(path.join(repoDir, 'snapshots'))).toEqual([first.id]);
  });

  it('a backup that fails taking its anchor leaves nothing running: no anchor, no manifest, no late warnings', async () => {
    const d = await Disk.create(diskPath, { size: 4 * MiB, blockSize: BS });
    await d.write(0, randomBytes(MiB));
    await d.close();
    // Several backups, and no catalog (no cache directory): finding the base reads
    // every manifest, and is started as soon as the disk is open.
    let last = await withRepo(repoDir, 'shared', (repo) => backup(repo, [diskPath]));
    for (let i = 0; i < 4; i++) {
      await withDisk(async (x) => {
        await x.write(i * BS, randomBytes(BS));
        await x.flush();
      });
      last = await withRepo(repoDir, 'shared', (repo) => backup(repo, [diskPath]));
    }
    const manifests = fs.readdirSync(path.join(repoDir, 'snapshots')).sort();
    // Taking the anchor (a bookmark) replaces the descriptor through a temporary file: that fails.
    const failing = new FaultFS(nodeFileSystem).fail({ op: 'create', path: (p) => path.basename(p).startsWith('disk.chain.tmp-') });
    const late: string[] = [];
    let ended = false;
    const repo = await Repository.open(repoDir, { lock: 'shared' });
    try {
      await expect(backup(repo, [diskPath], { sourceFs: failing, onWarning: (w) => ended && late.push(w.message) })).rejects.toMatchObject({ code: 'IO_ERROR' });
      ended = true;
    } finally {
      await repo.close();
    }
    await new Promise((r) => setTimeout(r, 200));
    expect(late).toEqual([]);
    await withDisk(async (x) => expect(anchors(x)).toEqual([`deltadisk-backup-${last.id}`]), true);
    expect(fs.readdirSync(path.join(repoDir, 'snapshots')).sort()).toEqual(manifests);
    expect((await withRepo(repoDir, 'shared', (r) => checkRepository(r))).errors).toEqual([]);
  });

  it('stops at the next read when aborted: INTERRUPTED, nothing published, its own anchor deleted and the previous one kept', async () => {
    const d = await Disk.create(diskPath, { size: 32 * MiB, blockSize: BS });
    await d.write(0, randomBytes(16 * MiB));
    await d.close();
    const first = await withRepo(repoDir, 'shared', (repo) => backup(repo, [diskPath]));
    await withDisk(async (x) => {
      await x.write(0, randomBytes(8 * MiB));
      await x.flush();
    });
    const ac = new AbortController();
    let reads = 0;
    const err = await withRepo(repoDir, 'shared', (repo) =>
      backup(repo, [diskPath], {
        signal: ac.signal,
        onProgress: (p) => {
          if (p.bytesRead > 0 && reads++ === 0) ac.abort();
        },
      }),
    ).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'INTERRUPTED' });
    await withDisk(async (x) => expect(anchors(x)).toEqual([`deltadisk-backup-${first.id}`]), true);
    await withRepo(repoDir, 'shared', async (repo) => {
      expect((await repo.listBackups()).map((b) => b.id)).toEqual([first.id]);
      expect((await checkRepository(repo)).errors).toEqual([]);
    });
  });

  it('takes no anchor in a dry run', async () => {
    const d = await Disk.create(diskPath, { size: 4 * MiB, blockSize: BS });
    await d.write(0, randomBytes(MiB));
    await d.close();
    const r = await withRepo(repoDir, 'shared', (repo) => backup(repo, [diskPath], { dryRun: true }));
    expect(r.summary.bytesNew).toBe(MiB);
    await withDisk(async (x) => expect(anchors(x)).toEqual([]), true);
  });
});
