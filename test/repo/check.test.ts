/**
 * `check` finds each kind of damage, on a real repository damaged by hand: a missing
 * pack, a damaged pack (header and data), an index entry pointing nowhere, a backup
 * referencing a missing chunk, a damaged manifest; and it calls leaks leaks.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { backup, checkRepository, inSubset, Repository, type RepoCheckReport as CheckReport } from '../../lib/index.js';
import { encodeIndexFile, indexNameOf } from '../../lib/format/index-file.js';
import { BlobKind, Compression, encodePackTail, packNameOf } from '../../lib/format/pack-header.js';
import { randomData, textData, withRepo, writeTree } from '../helpers/repo.js';
import { tempDir } from '../helpers/temp-dir.js';

let dir: string;
let cleanup: () => void;
let repoDir: string;
let backupId: string;

function packFiles(): string[] {
  const root = path.join(repoDir, 'packs');
  return fs.readdirSync(root).flatMap((s) => fs.readdirSync(path.join(root, s)).map((f) => path.join(root, s, f))).sort();
}

const check = (readData = false): Promise<CheckReport> => withRepo(repoDir, 'shared', (repo) => checkRepository(repo, { readData }));
const kinds = (r: CheckReport): string[] => [...new Set([...r.errors, ...r.leaks].map((p) => p.kind))].sort();

beforeEach(async () => {
  ({ dir, cleanup } = tempDir('deltadisk-check-'));
  repoDir = path.join(dir, 'repo');
  await Repository.init(repoDir, { packSize: 1 << 20, cdc: { min: 16 * 1024, avg: 64 * 1024, max: 256 * 1024 } });
  writeTree(path.join(dir, 'src'), { a: randomData(600_000), b: textData(400_000), c: randomData(900_000) });
  backupId = (await withRepo(repoDir, 'shared', (repo) => backup(repo, [path.join(dir, 'src')]))).id;
});
afterEach(() => cleanup());

describe('check', () => {
  it('finds nothing wrong with a fresh repository, with or without reading the data', async () => {
    for (const readData of [false, true]) {
      const r = await check(readData);
      expect(r.errors).toEqual([]);
      expect(r.leaks).toEqual([]);
    }
    expect(packFiles().length).toBeGreaterThan(1);
  });

  it('finds a missing pack and marks the backup failed', async () => {
    const gone = packFiles()[0]!;
    fs.unlinkSync(gone);
    const r = await check();
    expect(kinds(r)).toEqual(['dangling-index-entry', 'missing-chunk', 'missing-pack']);
    expect(r.failedBackups).toEqual([backupId]);
    expect(fs.readdirSync(path.join(repoDir, 'verify'))).toEqual([backupId]);
    expect(fs.readdirSync(path.join(repoDir, 'damaged'))).toEqual([path.basename(gone)]);
  });

  it('finds a damaged pack header without reading data, and damaged data with --read-data', async () => {
    const [p1, p2] = packFiles();
    const size = fs.statSync(p1!).size;
    const fd = fs.openSync(p1!, 'r+');
    fs.writeSync(fd, Buffer.from([0x55]), 0, 1, size - 40); // inside the header
    fs.closeSync(fd);
    expect(kinds(await check())).toContain('damaged-pack');
    const fd2 = fs.openSync(p2!, 'r+');
    fs.writeSync(fd2, Buffer.from([0x55, 0xaa]), 0, 2, 10); // inside the first blob
    fs.closeSync(fd2);
    const structural = await check();
    expect(structural.errors.filter((e) => e.pack === path.basename(p2!))).toEqual([]);
    const deep = await check(true);
    expect(deep.errors.some((e) => e.kind === 'damaged-chunk' && e.pack === path.basename(p2!))).toBe(true);
    expect(deep.failedBackups).toEqual([backupId]);
  });

  it('keeps a failed backup marked until a check reading every chunk finds it whole', async () => {
    const p = packFiles()[0]!;
    const original = fs.readFileSync(p);
    const damaged = Buffer.from(original);
    damaged[10]! ^= 0xff; // inside the first blob: only a read of the data sees it
    fs.writeFileSync(p, damaged);
    expect((await check(true)).failedBackups).toEqual([backupId]);
    const verify = (): string[] => fs.readdirSync(path.join(repoDir, 'verify'));
    expect(verify()).toEqual([backupId]);
    // Checks that do not read every chunk cannot clear it, however clean they look.
    expect((await check()).failedBackups).toEqual([]);
    expect(verify()).toEqual([backupId]);
    await withRepo(repoDir, 'shared', (repo) => checkRepository(repo, { readData: true, subset: { n: 2, t: 2 } }));
    expect(verify()).toEqual([backupId]);
    // Repaired (the pack as it was), a check reading everything clears it: 1/1 is everything.
    fs.writeFileSync(p, original);
    const whole = await withRepo(repoDir, 'shared', (repo) => checkRepository(repo, { readData: true, subset: { n: 1, t: 1 } }));
    expect(whole.errors).toEqual([]);
    expect(verify()).toEqual([]);
  });

  it('finds an index entry pointing nowhere', async () => {
    const list = [{ hash: randomData(32), storedLength: 100, rawLength: 100, kind: BlobKind.DATA, compression: Compression.NONE }];
    const tail = encodePackTail(list);
    const bytes = encodeIndexFile([{ name: packNameOf(tail), size: 100 + tail.length, tail }]);
    fs.writeFileSync(path.join(repoDir, 'index', indexNameOf(bytes)), bytes);
    const r = await check();
    expect(kinds(r)).toEqual(['dangling-index-entry']);
    expect(r.failedBackups).toEqual([]);
  });

  it('finds a backup referencing a chunk in no index', async () => {
    for (const f of fs.readdirSync(path.join(repoDir, 'index'))) fs.unlinkSync(path.join(repoDir, 'index', f));
    const r = await check();
    expect(kinds(r)).toEqual(['missing-chunk', 'unindexed-pack']);
    expect(r.failedBackups).toEqual([backupId]);
  });

  it('finds a damaged manifest and a damaged index file', async () => {
    const m = path.join(repoDir, 'snapshots', backupId);
    const bytes = fs.readFileSync(m);
    bytes[40]! ^= 0xff;
    fs.writeFileSync(m, bytes);
    const idx = fs.readdirSync(path.join(repoDir, 'index'))[0]!;
    fs.appendFileSync(path.join(repoDir, 'index', idx), 'x');
    const r = await check();
    expect(kinds(r)).toContain('damaged-manifest');
    expect(kinds(r)).toContain('damaged-index');
  });

  it('sparse index files claiming terabytes: a typed error, not an index sized by their claims', async () => {
    // The loader sizes its index from the listed files' sizes; sizes come from disk,
    // so the reservation is capped and each file is still refused on its own. (Sized
    // by these claims, the index's arrays would exceed what an ArrayBuffer may hold.)
    for (let i = 0; i < 200; i++) {
      const fd = fs.openSync(path.join(repoDir, 'index', `${String(i).padStart(3, '0')}${'f'.repeat(61)}`), 'w');
      fs.ftruncateSync(fd, 2 ** 40);
      fs.closeSync(fd);
    }
    const err = await withRepo(repoDir, 'shared', (repo) => backup(repo, [path.join(dir, 'src')])).catch((e: unknown) => e);
    expect((err as { code?: string }).code).toBe('LIMIT_EXCEEDED');
    const r = await check();
    expect(kinds(r)).toContain('damaged-index');
  });

  it('reports unreferenced data and leftover temporary files as leaks only', async () => {
    fs.writeFileSync(path.join(repoDir, 'index', 'x.tmp-123456'), 'partial');
    fs.unlinkSync(path.join(repoDir, 'snapshots', backupId));
    const r = await check();
    expect(r.errors).toEqual([]);
    expect(kinds(r)).toEqual(['temp-file', 'unused-data']);
  });

  it('reads each pack in exactly one subset of n/t', async () => {
    const names = packFiles().map((p) => path.basename(p));
    for (const t of [1, 2, 5]) {
      for (const name of names) expect(Array.from({ length: t }, (_, k) => inSubset(name, k + 1, t)).filter(Boolean).length).toBe(1);
    }
    let read = 0;
    for (let n = 1; n <= 3; n++) {
      read += (await withRepo(repoDir, 'shared', (repo) => checkRepository(repo, { readData: true, subset: { n, t: 3 } }))).stats.packsRead;
    }
    expect(read).toBe(names.length);
  });
});
