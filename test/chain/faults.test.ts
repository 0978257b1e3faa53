/**
 * I/O error injection into the chain (issue 4): every workload runs with EIO or
 * ENOSPC injected at its Nth file-system call, for every N, in transient and
 * persistent modes: transient EIO on real files (FaultFS over the node file
 * system), the other modes on the power-loss file system (so a crash right after
 * the failure is checked too).
 * See test/harness/fault-sweep.ts for what must hold.
 *
 * Size: every call of every workload (exhaustive); DELTADISK_FAULT_STRIDE > 1 thins
 * the sweep for a quick local run.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { nodeFileSystem } from '../../lib/io/node-file-system.js';
import { chainWorkloads } from '../harness/chain-workloads.js';
import { CrashFS } from '../harness/crash-fs.js';
import type { FaultRule } from '../harness/fault-fs.js';
import { countCalls, runWithFault, trackUnhandledRejections, type FaultEnv } from '../harness/fault-sweep.js';
import { Figures, formatFailures } from '../harness/figures.js';
import { sizeFromEnv } from '../harness/rng.js';

const STRIDE = sizeFromEnv('DELTADISK_FAULT_STRIDE', 1);
const figures = new Figures('chain I/O faults (FaultFS)');
afterAll(() => figures.publish());

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'deltadisk-faults-'));
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));
let n = 0;

async function realFiles(): Promise<FaultEnv> {
  const dir = path.join(root, `run${n++}`);
  fs.mkdirSync(dir);
  return { fs: nodeFileSystem, dir, cleanup: () => fs.rmSync(dir, { recursive: true, force: true }) };
}

async function crashFiles(): Promise<FaultEnv> {
  const crash = new CrashFS();
  const dir = '/fault/vm';
  await crash.mkdirp(dir);
  return { fs: crash, dir, crash, cleanup: () => undefined };
}

describe('chain under injected I/O errors', () => {
  for (const w of chainWorkloads()) {
    it(w.name, async () => {
      const before = figures.failures.length;
      await trackUnhandledRejections(
        async () => {
          const any = await countCalls(w, realFiles, 'any');
          const syncs = await countCalls(w, crashFiles, ['datasync', 'syncDir']);
          // Real files for the transient EIO sweep; the power-loss file system (which
          // also checks a crash right after each failure) for the other modes.
          figures.add('calls made by the workloads', any);
          const sweeps: [() => Promise<FaultEnv>, (at: number) => FaultRule, number][] = [
            [realFiles, (at) => ({ at, ops: 'any', errno: 'EIO', persistent: false }), any],
            [crashFiles, (at) => ({ at, ops: 'any', errno: 'ENOSPC', persistent: true }), any],
            [crashFiles, (at) => ({ at, ops: 'any', errno: 'EIO', persistent: true }), any],
            [crashFiles, (at) => ({ at, ops: 'any', errno: 'ENOSPC', persistent: false }), any],
            [crashFiles, (at) => ({ at, ops: ['datasync', 'syncDir'], errno: 'EIO', persistent: false }), syncs],
          ];
          for (const [env, rule, total] of sweeps) {
            for (let at = 1; at <= total; at += STRIDE) await runWithFault(w, env, rule(at), figures);
          }
        },
        (reason) => figures.fail(`${w.name}: unhandled rejection`, String(reason)),
      );
      const mine = figures.failures.slice(before);
      expect(mine, formatFailures(mine)).toEqual([]);
    });
  }
});
