/**
 * Power-loss simulation of the backup repository (issues 4 and 5): backups, forget
 * and prune recorded on a CrashFS, then checked at every crash point exhaustively
 * (pending operations all kept, all dropped, kept up to each prefix) and at random
 * crash states (random point, each pending operation kept, dropped or torn in 512 B
 * or 4 KiB sectors). Every state must pass test/harness/repo-checker.ts: the
 * repository opens, every acknowledged backup restores byte-identical, an
 * interrupted one is whole or absent, check --read-data finds no errors, and running
 * the interrupted step again and a prune leave it clean without leaks. Interrupted
 * forgets and prunes are also crashed again while they run a second time.
 *
 * Size: DELTADISK_CRASH_STATES random states per workload (default 200; every eighth
 * random state is also finished and pruned). DELTADISK_SEED replays a run.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { exhaustiveCases, explore, exploreRerunCrashes, randomCases, recordWorkload, type CrashCase, type Recording } from '../harness/crash-explorer.js';
import { Figures, formatFailures } from '../harness/figures.js';
import { lyingFs } from '../harness/lying-fs.js';
import { checkedRepoWorkload } from '../harness/repo-checker.js';
import { randomRepoSpec, REPO_WORKLOAD_SPECS, type RepoStep } from '../harness/repo-workloads.js';
import { Rng, seedFromEnv, sizeFromEnv } from '../harness/rng.js';

const RANDOM_STATES = sizeFromEnv('DELTADISK_CRASH_STATES', 200);
const SEED = seedFromEnv();
const figures = new Figures('repository power loss (CrashFS)');

afterAll(() => {
  console.log(`[deltadisk] repository crash test seed ${SEED} (replay with DELTADISK_SEED=${SEED})`);
  figures.publish();
});

/** All-kept crash points inside forget and prune steps, every `stride`-th. */
function maintenancePoints(rec: Recording, steps: readonly RepoStep[], stride: number): CrashCase[] {
  const out: CrashCase[] = [];
  steps.forEach((s, i) => {
    if (s.kind === 'backup') return;
    const { start, end } = rec.marks[i]!;
    for (let p = start + 1; p < end; p += stride) out.push({ point: p, policy: { kind: 'keep-all' } });
  });
  return out;
}

describe('backup repository under simulated power loss', () => {
  REPO_WORKLOAD_SPECS.forEach((spec, k) => {
    it(spec.name, async () => {
      const w = checkedRepoWorkload(spec);
      const rec = await recordWorkload(w);
      figures.add('recorded operations', rec.end);
      const before = figures.failures.length;
      await explore(w, rec, exhaustiveCases(rec), figures, { kind: 'exhaustive' });
      const sampled = checkedRepoWorkload(spec, { check: { finishEvery: 8 } });
      await explore(sampled, rec, randomCases(rec, new Rng(SEED ^ (k * 0x9e3779b1)), RANDOM_STATES), figures, { kind: 'random' });
      await exploreRerunCrashes(w, rec, maintenancePoints(rec, spec.steps, 6), figures, 6);
      const mine = figures.failures.slice(before);
      expect(mine, formatFailures(mine)).toEqual([]);
    });
  });

  it('random sequences of backups, forgets and prunes', async () => {
    const rng = new Rng(SEED ^ 0x2545f491);
    const before = figures.failures.length;
    for (let i = 0; i < 2; i++) {
      const spec = randomRepoSpec((rng.next() * 2 ** 32) >>> 0, 6);
      const w = checkedRepoWorkload(spec, { check: { finishEvery: 8 } });
      const rec = await recordWorkload(w);
      figures.add('recorded operations', rec.end);
      await explore(w, rec, randomCases(rec, rng.fork(), Math.ceil(RANDOM_STATES / 2)), figures, { kind: 'random sequences' });
    }
    const mine = figures.failures.slice(before);
    expect(mine, formatFailures(mine)).toEqual([]);
  });
});

describe('the repository checker', () => {
  for (const what of ['datasync', 'syncDir'] as const) {
    it(`fails a repository whose every ${what} is ignored`, async () => {
      const self = new Figures('self-test');
      const w = checkedRepoWorkload(REPO_WORKLOAD_SPECS[0]!, { check: { finish: false } });
      const rec = await recordWorkload(w, { wrap: (fs) => lyingFs(fs, what) });
      // Stops at the first state it fails.
      const untilFound = function* (): Generator<CrashCase> {
        for (const c of exhaustiveCases(rec)) {
          if (self.failures.length > 0) return;
          yield c;
        }
      };
      await explore(w, rec, untilFound(), self, { kind: 'exhaustive' });
      expect(self.failures.length).toBeGreaterThan(0);
    });
  }
});
