/**
 * Regression: prune turned an I/O error while reading a backup manifest or an index
 * file into REPO_CORRUPT ("the repository is damaged … prune deletes nothing until
 * check is clean"), sending the operator to look for damage that is not there
 * instead of at the failing device. Found by the repository fault sweep
 * (test/repo/io-faults.test.ts). An I/O error is IO_ERROR; only content that fails
 * its checks is REPO_CORRUPT.
 */
import { describe, expect, it } from 'vitest';
import { isDeltaDiskError } from '../../lib/errors.js';
import { MemoryFileSystem } from '../../lib/io/memory-file-system.js';
import { FaultFS } from '../harness/fault-fs.js';
import { backupStep, forgetStep, pruneStep, REPO_PARAMS, sysFor } from '../harness/repo-workloads.js';
import { Repository } from '../../lib/repo/repository.js';

describe('regression: prune reports I/O errors as such', () => {
  it('an EIO on any read of a prune is an IO_ERROR, never REPO_CORRUPT', async () => {
    const mem = new MemoryFileSystem();
    await mem.mkdirp('/r');
    const ffs = new FaultFS(mem);
    const sys = sysFor({ fs: ffs, dir: '/r' });
    await Repository.init(sys.repoDir, { fs: ffs, ...REPO_PARAMS });
    for (const n of [0, 2, 3]) await backupStep(n).run(sys);
    await forgetStep(1).run(sys);
    ffs.resetCounts();
    const image = await snapshot(mem);
    await pruneStep().run(sys);
    const reads = ffs.callsOf(['read']);
    expect(reads).toBeGreaterThan(5);
    const codes = new Set<string>();
    for (let at = 1; at <= reads; at++) {
      const fresh = await restoreImage(image);
      const f = new FaultFS(fresh);
      f.arm({ at, ops: ['read'], errno: 'EIO', persistent: false });
      const err = await pruneStep().run(sysFor({ fs: f, dir: '/r' })).then(() => undefined, (e: unknown) => e);
      if (err === undefined) continue;
      expect(isDeltaDiskError(err), String(err)).toBe(true);
      codes.add((err as { code: string }).code);
      expect((err as { code: string }).code, `read ${at}: ${(err as Error).message}`).toBe('IO_ERROR');
    }
    expect(codes).toEqual(new Set(['IO_ERROR']));
  });
});

type Image = Map<string, Uint8Array | 'dir'>;

async function snapshot(fs: MemoryFileSystem, dir = '/', out: Image = new Map()): Promise<Image> {
  for (const name of await fs.readdir(dir)) {
    const p = dir === '/' ? `/${name}` : `${dir}/${name}`;
    if ((await fs.stat(p)).isDirectory) {
      out.set(p, 'dir');
      await snapshot(fs, p, out);
    } else {
      const size = (await fs.stat(p)).size;
      const h = await fs.open(p, 'read');
      const b = new Uint8Array(size);
      await h.read(b, 0, size, 0);
      await h.close();
      out.set(p, b);
    }
  }
  return out;
}

async function restoreImage(image: Image): Promise<MemoryFileSystem> {
  const fs = new MemoryFileSystem();
  for (const [p, v] of image) {
    if (v === 'dir') await fs.mkdir(p);
    else {
      const h = await fs.open(p, 'createExclusive');
      await h.write([v], 0);
      await h.close();
    }
  }
  return fs;
}
