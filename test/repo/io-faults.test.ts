/**
 * I/O error injection into the backup repository (issues 4 and 5): backups, forget
 * and prune run with EIO or ENOSPC injected at their Nth file-system call, transient
 * and persistent, and with failing fsyncs, on the power-loss file system (so a power
 * cut right after each failure is checked too) and, as a witness, on real files.
 * The failed operation must reject with IO_ERROR or NO_SPACE within 5 s, with no
 * unhandled rejection; afterwards the repository must pass
 * test/harness/repo-checker.ts (every acknowledged backup restores, check
 * --read-data has no errors, running the failed step again and a prune leave it
 * clean).
 *
 * Size: every fsync for a failing (persistent) fsync; every
 * DELTADISK_REPO_FAULT_STRIDE-th mutating call (create, write, fsync, rename, link,
 * unlink, mkdir …; default 2, 1 = every one) for transient EIO and every third of
 * those for persistent ENOSPC; 8 points over all calls (reads included) for
 * persistent EIO; real files every (2 × DELTADISK_FAULT_REAL_STRIDE)-th mutating
 * call (default 10).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { DeltaDiskError } from '../../lib/errors.js';
import { nodeFileSystem } from '../../lib/io/node-file-system.js';
import { CrashFS } from '../harness/crash-fs.js';
import { MUTATING_OPS, type FaultRule } from '../harness/fault-fs.js';
import { countCalls, runWithFault, trackUnhandledRejections, type FaultEnv } from '../harness/fault-sweep.js';
import { Figures, formatFailures } from '../harness/figures.js';
import { checkedRepoWorkload } from '../harness/repo-checker.js';
import { REPO_WORKLOAD_SPECS, type RepoWorkload } from '../harness/repo-workloads.js';
import { sizeFromEnv } from '../harness/rng.js';
import { Violation } from '../harness/workload.js';

const STRIDE = sizeFromEnv('DELTADISK_REPO_FAULT_STRIDE', 2);
const REAL_STRIDE = sizeFromEnv('DELTADISK_FAULT_REAL_STRIDE', 5) * 2;
const figures = new Figures('repository I/O faults (FaultFS)');
afterAll(() => figures.publish());

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'deltadisk-repo-faults-'));
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));
let n = 0;

const TYPED = new Set(['IO_ERROR', 'NO_SPACE', 'HANDLE_BROKEN']);
const DIR = '/fault/repo';

/**
 * The workload with its setup (init and the initial backups) done once: every run
 * starts from a copy of that state (on CrashFS) or of that directory (real files).
 */
async function prepared(spec: (typeof REPO_WORKLOAD_SPECS)[number]): Promise<{ w: RepoWorkload; crashFiles: () => Promise<FaultEnv>; realFiles: () => Promise<FaultEnv> }> {
  // The power-cut state is finished (stepped again and pruned), the live one only checked.
  const base = checkedRepoWorkload(spec, { check: { finishEvery: 2 } });
  const template = new CrashFS();
  await template.mkdirp(DIR);
  await base.setup({ fs: template, dir: DIR });
  template.checkpoint();
  const realTemplate = path.join(root, `template${n++}`);
  fs.mkdirSync(realTemplate);
  await base.setup({ fs: nodeFileSystem, dir: realTemplate });
  const w: RepoWorkload = {
    ...base,
    setup: (env) => base.reopen(env),
    afterFailure: async (_sys, err) => {
      if (!(err instanceof DeltaDiskError)) throw new Violation(`failed untyped: ${err instanceof Error ? `${err.name}: ${err.message}` : String(err)}`);
      if (!TYPED.has(err.code)) throw new Violation(`an injected I/O error ended as ${err.code}: ${err.message}`);
    },
  };
  return {
    w,
    crashFiles: async () => {
      const crash = template.crashState(template.length, { kind: 'keep-all' }).fs;
      return { fs: crash, dir: DIR, crash, cleanup: () => undefined };
    },
    realFiles: async () => {
      const dir = path.join(root, `run${n++}`);
      fs.cpSync(realTemplate, dir, { recursive: true });
      return { fs: nodeFileSystem, dir, cleanup: () => fs.rmSync(dir, { recursive: true, force: true }) };
    },
  };
}

describe('backup repository under injected I/O errors', () => {
  for (const spec of REPO_WORKLOAD_SPECS) {
    it(spec.name, async () => {
      const before = figures.failures.length;
      const { w, crashFiles, realFiles } = await prepared(spec);
      await trackUnhandledRejections(
        async () => {
          const any = await countCalls(w, crashFiles, 'any');
          const mutating = await countCalls(w, crashFiles, MUTATING_OPS);
          const syncs = await countCalls(w, crashFiles, ['datasync', 'syncDir']);
          figures.add('calls made by the workloads', any);
          const spread = Math.max(1, Math.floor(any / 8));
          const sweeps: [() => Promise<FaultEnv>, (at: number) => FaultRule, number, number][] = [
            [crashFiles, (at) => ({ at, ops: MUTATING_OPS, errno: 'EIO', persistent: false }), mutating, STRIDE],
            [crashFiles, (at) => ({ at, ops: ['datasync', 'syncDir'], errno: 'EIO', persistent: true }), syncs, 1],
            [crashFiles, (at) => ({ at, ops: MUTATING_OPS, errno: 'ENOSPC', persistent: true }), mutating, STRIDE * 3],
            [crashFiles, (at) => ({ at, ops: 'any', errno: 'EIO', persistent: true }), any, spread],
            [realFiles, (at) => ({ at, ops: MUTATING_OPS, errno: 'EIO', persistent: false }), mutating, REAL_STRIDE],
          ];
          for (const [env, rule, total, stride] of sweeps) {
            for (let at = 1; at <= total; at += stride) await runWithFault(w, env, rule(at), figures);
          }
        },
        (reason) => figures.fail(`${w.name}: unhandled rejection`, String(reason)),
      );
      const mine = figures.failures.slice(before);
      expect(mine, formatFailures(mine)).toEqual([]);
    });
  }
});
