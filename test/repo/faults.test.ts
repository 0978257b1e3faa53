/**
 * I/O failures injected at every mutating call of a backup and of a prune (the Nth
 * create, write, fsync, rename, link or directory sync in the repository fails with
 * EIO, or ENOSPC): the operation ends in a typed error, and afterwards the
 * repository checks without errors and every backup restores to what it held.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { backup, checkRepository, DeltaDiskError, forget, prune, Repository, restore, type FileSystem } from '../../lib/index.js';
import { nodeFileSystem } from '../../lib/io/node-file-system.js';
import { FaultFS, type FaultOp } from '../harness/fault-fs.js';
import { randomData, snapshotTree, writeTree } from '../helpers/repo.js';
import { tempDir } from '../helpers/temp-dir.js';

const MUTATING: readonly FaultOp[] = ['create', 'write', 'datasync', 'rename', 'link', 'syncDir', 'unlink'];
let dir: string;
let cleanup: () => void;

beforeEach(() => ({ dir, cleanup } = tempDir('deltadisk-faults-')));
afterEach(() => cleanup());

/** A file system failing the `n`th mutating call (0: none) with `errno`; counts them. (Only the repository goes through it.) */
function failing(n: number, errno: 'EIO' | 'ENOSPC' = 'EIO'): { fs: FaultFS; count: () => number } {
  const fs = new FaultFS(nodeFileSystem);
  if (n > 0) fs.arm({ at: n, ops: MUTATING, errno, persistent: false });
  return { fs, count: () => fs.callsOf(MUTATING) };
}

async function run<T>(repoDir: string, fsys: FileSystem, lock: 'shared' | 'maintenance', fn: (r: Repository) => Promise<T>): Promise<T> {
  const r = await Repository.open(repoDir, { fs: fsys, lock });
  try {
    return await fn(r);
  } finally {
    await r.close().catch(() => undefined);
  }
}

/**
 * No errors, and every backup restores: those in `expected` to their tree, any other
 * (a backup whose last fsync failed after its manifest was in place) to `other`.
 */
async function assertHealthy(repoDir: string, expected: Map<string, Record<string, string>>, other?: Record<string, string>): Promise<void> {
  const report = await run(repoDir, nodeFileSystem, 'shared', (r) => checkRepository(r, { readData: true, record: false }));
  expect(report.errors).toEqual([]);
  const ids = fs.readdirSync(path.join(repoDir, 'snapshots')).filter((n) => /^[0-9a-f]{32}$/.test(n));
  for (const id of ids) {
    const out = path.join(dir, `out-${id}-${Math.random()}`);
    await run(repoDir, nodeFileSystem, 'shared', (r) => restore(r, id, { target: out }));
    expect(snapshotTree(path.join(out, 'src'))).toEqual(expected.get(id) ?? other);
  }
}

describe('injected I/O failures', () => {
  it('leave a backup failed with a typed error and the repository whole, at every call', async () => {
    const base = path.join(dir, 'base');
    const src = path.join(dir, 'src');
    writeTree(src, { a: randomData(300_000), b: randomData(100_000) });
    await Repository.init(base, { packSize: 1 << 20 });
    const first = await run(base, nodeFileSystem, 'shared', (r) => backup(r, [src]));
    const expected = new Map([[first.id, snapshotTree(src)]]);
    writeTree(src, { b: randomData(700_000), c: 'new' });
    const after = snapshotTree(src);
    const probe = path.join(dir, 'probe');
    fs.cpSync(base, probe, { recursive: true });
    const probeFs = failing(0);
    await run(probe, probeFs.fs, 'shared', (r) => backup(r, [src]));
    const calls = probeFs.count();
    expect(calls).toBeGreaterThan(10);
    for (let n = 1; n <= calls; n++) {
      const repoDir = path.join(dir, `r${n}`);
      fs.cpSync(base, repoDir, { recursive: true });
      const f = failing(n, n % 5 === 0 ? 'ENOSPC' : 'EIO');
      let id: string | undefined;
      try {
        id = (await run(repoDir, f.fs, 'shared', (r) => backup(r, [src]))).id;
      } catch (err) {
        expect(err, `call ${n}`).toBeInstanceOf(DeltaDiskError);
        expect(['IO_ERROR', 'NO_SPACE', 'HANDLE_BROKEN'], `call ${n}: ${(err as Error).message}`).toContain((err as DeltaDiskError).code);
      }
      const want = new Map(expected);
      if (id !== undefined) want.set(id, after);
      await assertHealthy(repoDir, want, after);
      fs.rmSync(repoDir, { recursive: true, force: true });
    }
  });

  it('leave a prune failed with a typed error, the repository whole, and the next prune finishing', async () => {
    const base = path.join(dir, 'base');
    const src = path.join(dir, 'src');
    await Repository.init(base, { packSize: 1 << 20 });
    writeTree(src, { a: randomData(400_000), b: randomData(400_000) });
    await run(base, nodeFileSystem, 'shared', (r) => backup(r, [src]));
    fs.unlinkSync(path.join(src, 'a'));
    const kept = await run(base, nodeFileSystem, 'shared', (r) => backup(r, [src]));
    await run(base, nodeFileSystem, 'maintenance', (r) => forget(r, { keepLast: 1 }));
    const expected = new Map([[kept.id, snapshotTree(src)]]);
    const probe = path.join(dir, 'probe');
    fs.cpSync(base, probe, { recursive: true });
    const probeFs = failing(0);
    await run(probe, probeFs.fs, 'maintenance', (r) => prune(r, { repackThreshold: 0.01 }));
    const calls = probeFs.count();
    expect(calls).toBeGreaterThan(10);
    for (let n = 1; n <= calls; n++) {
      const repoDir = path.join(dir, `p${n}`);
      fs.cpSync(base, repoDir, { recursive: true });
      try {
        await run(repoDir, failing(n).fs, 'maintenance', (r) => prune(r, { repackThreshold: 0.01 }));
      } catch (err) {
        expect(err, `call ${n}`).toBeInstanceOf(DeltaDiskError);
      }
      await assertHealthy(repoDir, expected);
      const again = await run(repoDir, nodeFileSystem, 'maintenance', (r) => prune(r, { repackThreshold: 0.01 }));
      expect(again.completed).toBe(true);
      const report = await run(repoDir, nodeFileSystem, 'shared', (r) => checkRepository(r, { readData: true }));
      expect(report.errors).toEqual([]);
      expect(report.leaks.filter((l) => l.kind !== 'temp-file')).toEqual([]);
      fs.rmSync(repoDir, { recursive: true, force: true });
    }
  });
});
