/**
 * The backup catalog on real repositories: a backup reads only the manifests the
 * catalog does not know and the one it builds on; the catalog agrees with the
 * manifests (forgotten backups drop out, a known manifest is neither read nor looked
 * at again, a damaged manifest is reported every time and never cataloged); a damaged,
 * foreign or absent catalog means reading every manifest; a well-framed catalog with
 * hostile fields is refused (REPO_CORRUPT) and read as none; and a manifest damaged
 * after it was cataloged is passed over, with a warning, by the backup that would
 * build on it.
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { backup, Disk, Repository, restore, type ChainEntry } from '../../lib/index.js';
import { BACKUP_CATALOG_MAGIC, decodeBackupCatalog, encodeBackupCatalog, MAX_CATALOG_BACKUPS } from '../../lib/format/backup-catalog.js';
import { encodeFramed } from '../../lib/format/framed.js';
import { nodeFileSystem } from '../../lib/io/node-file-system.js';
import { BackupCatalog } from '../../lib/repo/backup-catalog.js';
import { tempDir } from '../helpers/temp-dir.js';

const MiB = 1 << 20;
const BS = 64 * 1024;
let dir: string;
let cleanup: () => void;
let repoDir: string;
let cacheDir: string;
let diskPath: string;

beforeEach(async () => {
  ({ dir, cleanup } = tempDir('deltadisk-catalog-'));
  repoDir = path.join(dir, 'repo');
  cacheDir = path.join(dir, 'cache');
  await Repository.init(repoDir, { packSize: 2 * MiB });
  fs.mkdirSync(path.join(dir, 'vm'));
  diskPath = path.join(dir, 'vm', 'disk.chain');
  const d = await Disk.create(diskPath, { size: 4 * MiB, blockSize: BS });
  await d.write(0, randomBytes(2 * MiB));
  await d.close();
});
afterEach(() => {
  vi.restoreAllMocks();
  cleanup();
});

/** Opens the repository with the catalog in `cache` (null: without one). */
async function withRepo<T>(fn: (r: Repository) => Promise<T>, cache: string | null = cacheDir): Promise<T> {
  const repo = await Repository.open(repoDir, { lock: 'shared', purpose: 'test', ...(cache === null ? {} : { cacheDir: cache }) });
  try {
    return await fn(repo);
  } finally {
    await repo.close();
  }
}

/** Changes a few blocks of the disk. */
async function touchDisk(): Promise<void> {
  const d = await Disk.open(diskPath);
  try {
    for (const b of [1, 9, 20]) await d.write(b * BS + 7, randomBytes(100));
  } finally {
    await d.close();
  }
}

/** Watches `repo` read manifests: the ids it has read so far. */
function manifestReads(repo: Repository): () => string[] {
  const spy = vi.spyOn(repo.backend, 'read');
  return () => spy.mock.calls.filter(([kind]) => kind === 'snapshot').map(([, id]) => id);
}

/** Backs up `paths` and counts the manifests read meanwhile. */
async function backUp(paths: string[], cache: string | null = cacheDir) {
  return withRepo(async (repo) => {
    const reads = manifestReads(repo);
    const r = await backup(repo, paths);
    const read = reads();
    vi.restoreAllMocks();
    return { ...r, read };
  }, cache);
}

const chainOf = (r: { manifest: { entries: readonly { type: string }[] } }): ChainEntry => r.manifest.entries.find((e) => e.type === 'chain') as ChainEntry;
const catalogFile = (): Promise<string> => withRepo(async (r) => path.join(cacheDir, `${r.config.id}.backups`));
const manifestPath = (id: string): string => path.join(repoDir, 'snapshots', id);

describe('backup catalog', () => {
  it('lets a backup read only the manifests it does not know, and the one it builds on', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) {
      await touchDisk();
      const r = await backUp([diskPath]);
      // Every backup builds on the one before, reading the manifests made since the
      // catalog was saved (the previous backup's own) and nothing else.
      expect(chainOf(r).chain.base).toBe(ids.at(-1) ?? null);
      expect(r.read).toEqual(ids.length === 0 ? [] : [ids.at(-1)]);
      ids.push(r.id);
    }
    const c = decodeBackupCatalog(fs.readFileSync(await catalogFile()));
    expect([...c.backups.keys()].sort()).toEqual(ids.slice(0, -1).sort());
    // Without a catalog, every manifest is read.
    await touchDisk();
    const bare = await backUp([diskPath], null);
    expect(chainOf(bare).chain.base).toBe(ids.at(-1));
    expect([...new Set(bare.read)].sort()).toEqual([...ids].sort());
  });

  it('agrees with the manifests: forgotten ones drop out, known ones are not read again, damaged ones are reported and left out', async () => {
    const other = path.join(dir, 'files');
    fs.mkdirSync(other);
    fs.writeFileSync(path.join(other, 'a'), randomBytes(1000));
    const a = await backUp([diskPath]);
    const b = await backUp([other]);
    await backUp([other]); // catalogs a and b
    const fromManifests = async () => withRepo(async (r) => r.catalogBackups(() => undefined), null);
    const expected = await fromManifests();
    const cataloged = await withRepo(async (r) => r.catalogBackups(() => undefined));
    expect(cataloged).toEqual(expected);
    expect(cataloged.get(a.id)?.disks).toEqual([chainOf(a).chain.diskId]);
    expect(cataloged.get(b.id)?.disks).toEqual([]);

    // Forgotten: b's manifest goes; the catalog entry no longer counts.
    fs.rmSync(manifestPath(b.id));
    const afterForget = await withRepo(async (r) => r.catalogBackups(() => undefined));
    expect(afterForget.has(b.id)).toBe(false);
    expect(afterForget).toEqual(await fromManifests());

    // A manifest the catalog knows is not read again, nor looked at: a manifest is
    // never rewritten, so its name stands for it.
    const stats = await withRepo(async (r) => {
      const reads = manifestReads(r);
      const lstat = vi.spyOn(nodeFileSystem, 'lstat');
      expect(await r.catalogBackups(() => undefined)).toEqual(afterForget);
      const out = { reads: reads(), lstats: lstat.mock.calls.filter(([p]) => p.includes(`${path.sep}snapshots${path.sep}`)).length };
      vi.restoreAllMocks();
      return out;
    });
    expect(stats).toEqual({ reads: [], lstats: 0 });

    // A damaged manifest the catalog does not know: reported on every call, never cataloged.
    const d = await backUp([other]);
    const bytes = fs.readFileSync(manifestPath(d.id));
    bytes[bytes.length - 1]! ^= 0xff;
    fs.writeFileSync(manifestPath(d.id), bytes);
    for (let i = 0; i < 2; i++) {
      const damaged: string[] = [];
      const out = await withRepo(async (r) => r.catalogBackups((id) => damaged.push(id)));
      expect(damaged).toEqual([d.id]);
      expect(out.has(d.id)).toBe(false);
    }
  });

  it('is not used when damaged, foreign or unreadable: every manifest is read', async () => {
    for (let i = 0; i < 3; i++) {
      await touchDisk();
      await backUp([diskPath]);
    }
    const file = await catalogFile();
    const good = fs.readFileSync(file);
    const count = async (): Promise<number> =>
      withRepo(async (r) => {
        const reads = manifestReads(r);
        await r.catalogBackups(() => undefined);
        return reads().length;
      });
    expect(await count()).toBe(1); // only the last backup's manifest is new to it
    const damaged = Buffer.from(good);
    damaged[40]! ^= 0x01;
    fs.writeFileSync(file, damaged);
    expect(await count()).toBe(3);
    // Another repository's catalog under this repository's name.
    const c = decodeBackupCatalog(good);
    fs.writeFileSync(file, encodeBackupCatalog({ repo: 'f'.repeat(32), backups: c.backups }));
    expect(await count()).toBe(3);
    fs.writeFileSync(file, good.subarray(0, 20));
    expect(await count()).toBe(3);
    // Each of those was replaced by a good one.
    expect(await count()).toBe(0);
    expect((await new BackupCatalog(nodeFileSystem, cacheDir, c.repo).load()).size).toBe(3);
    expect((await new BackupCatalog(nodeFileSystem, cacheDir, 'f'.repeat(32)).load()).size).toBe(0);
  });

  it('passes over a manifest damaged after it was cataloged, with a warning', async () => {
    const other = path.join(dir, 'files');
    fs.mkdirSync(other);
    fs.writeFileSync(path.join(other, 'a'), randomBytes(1000));
    await backUp([diskPath]);
    await touchDisk();
    const second = await backUp([diskPath]);
    await backUp([other]); // catalogs the second backup as the disk's latest
    const bytes = fs.readFileSync(manifestPath(second.id));
    bytes[bytes.length - 1]! ^= 0xff;
    fs.writeFileSync(manifestPath(second.id), bytes);
    await touchDisk();
    const third = await backUp([diskPath]);
    expect(third.warnings.map((w) => [w.path, w.code])).toEqual([[`backup ${second.id}`, 'REPO_CORRUPT']]);
    // The first backup's anchor went when the second was published: a full read.
    expect(chainOf(third).chain.base).toBeNull();
    expect(third.summary.bytesRead).toBe(2 * MiB);
    const cur = await Disk.open(diskPath, { readOnly: true }).then(async (d) => {
      try {
        return await d.read(0, d.virtualSize);
      } finally {
        await d.close();
      }
    });
    const out = path.join(dir, 'out');
    await withRepo((r) => restore(r, third.id, { target: out, flatten: true, verify: true }));
    expect(fs.readFileSync(path.join(out, 'disk.raw')).equals(cur)).toBe(true);
  });
});

describe('decodeBackupCatalog', () => {
  const id = 'a'.repeat(32);
  const good = [id, 800, '2026-11-22T10:00:00.000000Z', '2026-11-22T10:00:01.000000Z', ['disk-1']];
  const frame = (payload: unknown): Buffer => encodeFramed(BACKUP_CATALOG_MAGIC, payload);

  it('reads back what was written', () => {
    const backups = new Map([[id, { size: 800, time: good[2] as string, end: good[3] as string, disks: ['disk-1', 'disk-2'] }]]);
    expect(decodeBackupCatalog(encodeBackupCatalog({ repo: 'b'.repeat(32), backups }))).toEqual({ repo: 'b'.repeat(32), backups });
  });

  it('refuses hostile fields with REPO_CORRUPT, and a repository then reads every manifest', async () => {
    const hostile: unknown[] = [
      'not a map',
      { repo: 'x', backups: [] },
      { repo: 'b'.repeat(32), backups: 'none' },
      { repo: 'b'.repeat(32), backups: [[id, 800, 'a', 'b']] },
      { repo: 'b'.repeat(32), backups: [['../../etc', 800, 'a', 'b', []]] },
      { repo: 'b'.repeat(32), backups: [good, good] },
      { repo: 'b'.repeat(32), backups: [[id, -1, 'a', 'b', []]] },
      { repo: 'b'.repeat(32), backups: [[id, 2 ** 40, 'a', 'b', []]] },
      { repo: 'b'.repeat(32), backups: [[id, 800, '', 'b', []]] },
      { repo: 'b'.repeat(32), backups: [[id, 800, 'a', 'b', [7]]] },
      { repo: 'b'.repeat(32), backups: [[id, 800, 'a', 'b', ['']]] },
    ];
    for (const payload of hostile) expect(() => decodeBackupCatalog(frame(payload)), JSON.stringify(payload)).toThrow(expect.objectContaining({ code: 'REPO_CORRUPT' }));
    // Longer than any field may be: refused while decoding, before anything is kept.
    expect(() => decodeBackupCatalog(frame({ repo: 'b'.repeat(32), backups: [[id, 800, 'x'.repeat(65), 'b', []]] }))).toThrow(expect.objectContaining({ code: 'REPO_CORRUPT' }));
    expect(MAX_CATALOG_BACKUPS).toBeGreaterThan(365 * 1000);
    // Written under this repository's name, the hostile catalog is a miss.
    await touchDisk();
    await backUp([diskPath]);
    const file = await catalogFile();
    const repoId = await withRepo(async (r) => r.config.id);
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(file, frame({ repo: repoId, backups: [good, good] }));
    const reads = await withRepo(async (r) => {
      const reads = manifestReads(r);
      await r.catalogBackups(() => undefined);
      return reads().length;
    });
    expect(reads).toBe(1);
    expect(decodeBackupCatalog(fs.readFileSync(file)).backups.size).toBe(1); // replaced by a good one
  });
});
