/**
 * I/O error injection into the chain (issue 4): every workload runs with EIO or
 * ENOSPC injected at its Nth file-system call, for every N, in transient and
 * persistent modes, plus EIO on every fsync, on the power-loss file system (so a
 * crash right after each failure is checked too), and transient EIO on real files
 * (FaultFS over the node file system) as a witness.
 * See test/harness/fault-sweep.ts for what must hold.
 *
 * Size: every call of every workload (exhaustive) in memory, every fifth on real
 * files; DELTADISK_FAULT_STRIDE and DELTADISK_FAULT_REAL_STRIDE change the step.
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
const REAL_STRIDE = sizeFromEnv('DELTADISK_FAULT_REAL_STRIDE', 5);
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
          const any = await countCalls(w, crashFiles, 'any');
          const syncs = await countCalls(w, crashFiles, ['datasync', 'syncDir']);
          figures.add('calls made by the workloads', any);
          // Every call in every mode on the power-loss file system (which also checks a
          // crash right after each failure); real files witness the same for a fifth
          // of the calls (DELTADISK_FAULT_REAL_STRIDE, default 5).
          const sweeps: [() => Promise<FaultEnv>, (at: number) => FaultRule, number, number][] = [
            [crashFiles, (at) => ({ at, ops: 'any', errno: 'EIO', persistent: false }), any, STRIDE],
            [crashFiles, (at) => ({ at, ops: 'any', errno: 'ENOSPC', persistent: true }), any, STRIDE],
            [crashFiles, (at) => ({ at, ops: 'any', errno: 'EIO', persistent: true }), any, STRIDE],
            [crashFiles, (at) => ({ at, ops: 'any', errno: 'ENOSPC', persistent: false }), any, STRIDE],
            [crashFiles, (at) => ({ at, ops: ['datasync', 'syncDir'], errno: 'EIO', persistent: false }), syncs, STRIDE],
            [realFiles, (at) => ({ at, ops: 'any', errno: 'EIO', persistent: false }), any, REAL_STRIDE],
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
