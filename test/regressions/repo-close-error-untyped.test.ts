/**
 * Regression: an EIO from closing a repository file that was only read (an index
 * file, a manifest, the config) escaped the backend as a raw errno error, so a
 * backup, forget or prune rejected with an untyped Error instead of IO_ERROR. Found
 * by the repository fault sweep (test/repo/io-faults.test.ts, persistent EIO at
 * the Nth call of any kind).
 */
import { describe, expect, it } from 'vitest';
import { DeltaDiskError } from '../../lib/errors.js';
import { MemoryFileSystem } from '../../lib/io/memory-file-system.js';
import { Repository } from '../../lib/repo/repository.js';
import { FaultFS } from '../harness/fault-fs.js';
import { backupStep, forgetStep, pruneStep, REPO_PARAMS, sysFor, type RepoStep } from '../harness/repo-workloads.js';

describe('regression: a failing close of a repository file is typed', () => {
  const steps: [string, () => RepoStep][] = [
    ['backup', () => backupStep(4)],
    ['forget', () => forgetStep(1)],
    ['prune', () => pruneStep()],
  ];
  for (const [label, make] of steps) {
    it(`every close of a ${label} failing with EIO ends in IO_ERROR or success`, async () => {
      const mem = new MemoryFileSystem();
      await mem.mkdirp('/r');
      const ffs = new FaultFS(mem);
      const sys = sysFor({ fs: ffs, dir: '/r' });
      await Repository.init(sys.repoDir, { fs: ffs, ...REPO_PARAMS });
      for (const n of [0, 2]) await backupStep(n).run(sys);
      ffs.resetCounts();
      await make().run(sys);
      const closes = ffs.callsOf(['close']);
      expect(closes).toBeGreaterThan(0);
      for (let at = 1; at <= closes; at++) {
        ffs.arm({ at, ops: ['close'], errno: 'EIO', persistent: false });
        const err = await make().run(sys).then(() => undefined, (e: unknown) => e);
        ffs.disarm();
        if (err === undefined) continue;
        expect(err, `close ${at}: ${String(err)}`).toBeInstanceOf(DeltaDiskError);
        expect((err as DeltaDiskError).code).toBe('IO_ERROR');
      }
    });
  }
});
