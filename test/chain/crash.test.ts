/**
 * Power-loss simulation of the chain (issue 4): every workload of
 * test/harness/chain-workloads.ts is recorded once on a CrashFS, then every crash
 * point is checked exhaustively (pending operations all kept, all dropped, and kept
 * up to each prefix), plus random crash states (random point, random keep / drop /
 * tear per pending operation, 512 B or 4 KiB sectors), with torn garbage confined
 * to the bytes written (powersafe overwrite) and, half as many, spread over the
 * whole sectors touched (SQLite's test6.c model). Every recovery that writes
 * (resuming a merge, cutting a torn tail, removing leftovers, indexing the tail on
 * close) after an all-kept or all-dropped crash is crashed in turn at each of its
 * operations, and (every fourth such point, DELTADISK_RECOVERY_FAULT_STRIDE) fails
 * with EIO at each of its calls.
 *
 * Size: DELTADISK_CRASH_STATES random states per workload (default 200, plus half as
 * many whole-sector ones; tens of thousands for a long run). DELTADISK_SEED replays a
 * run (the seed is printed).
 */
import { afterAll, describe, expect, it } from 'vitest';
import { chainWorkloads, manySmallWritesWorkload, randomChainWorkload } from '../harness/chain-workloads.js';
import { exhaustiveCases, explore, exploreRecoveryCrashes, exploreRecoveryFaults, randomCases, recordWorkload } from '../harness/crash-explorer.js';
import { Figures, formatFailures } from '../harness/figures.js';
import { Rng, seedFromEnv, sizeFromEnv } from '../harness/rng.js';

const RANDOM_STATES = sizeFromEnv('DELTADISK_CRASH_STATES', 200);
const SEED = seedFromEnv();
const RECOVERY_FAULT_STRIDE = sizeFromEnv('DELTADISK_RECOVERY_FAULT_STRIDE', 4);
const figures = new Figures('chain power loss (CrashFS)');

afterAll(() => {
  console.log(`[deltadisk] crash test seed ${SEED} (replay with DELTADISK_SEED=${SEED})`);
  figures.publish();
});

describe('chain under simulated power loss', () => {
  for (const w of chainWorkloads()) {
    it(w.name, async () => {
      const rec = await recordWorkload(w);
      if (w.spec.expectFiles !== undefined) {
        const names = new Set([...rec.live.keys()].map((p) => p.split('/').pop()!));
        for (const f of w.spec.expectFiles.gone) expect(names.has(f), `${f} should have been merged away`).toBe(false);
        for (const f of w.spec.expectFiles.kept) expect(names.has(f), `${f} should remain`).toBe(true);
      }
      if (w.spec.expectDirectAppend === true) {
        // A direct append writes whole pages (records and their PAD); one through the
        // page cache writes the records alone, which never end on a page.
        const direct = rec.fs.log.some((op) => op.k === 'write' && op.path.endsWith('.delta') && op.pos % 4096 === 0 && op.data.length >= 256 * 1024 && op.data.length % 4096 === 0);
        expect(direct, 'the merge should have appended directly').toBe(true);
      }
      figures.add('recorded operations', rec.end);
      const before = figures.failures.length;
      await explore(w, rec, exhaustiveCases(rec), figures, { kind: 'exhaustive' });
      await exploreRecoveryCrashes(w, rec, [...exhaustiveCases(rec)].filter((c) => c.policy.kind !== 'prefix'), figures);
      await exploreRecoveryFaults(w, rec, [...exhaustiveCases(rec)].filter((c) => c.policy.kind === 'keep-all'), figures, RECOVERY_FAULT_STRIDE);
      await explore(w, rec, randomCases(rec, new Rng(SEED ^ hash(w.name)), RANDOM_STATES), figures, { kind: 'random' });
      await explore(w, rec, randomCases(rec, new Rng(SEED ^ hash(w.name) ^ 0x5ec7), Math.ceil(RANDOM_STATES / 2), 'sector'), figures, { kind: 'random, whole-sector tears' });
      const mine = figures.failures.slice(before);
      expect(mine, formatFailures(mine)).toEqual([]);
    });
  }

  it('many small writes: every point from the flush that writes a map segment on, and random ones', async () => {
    // Each state of this long workload costs a quarter of a second to check: the
    // points from the segment-writing flush on (all kept, all dropped), and a tenth
    // of the usual random states.
    const w = manySmallWritesWorkload();
    const rec = await recordWorkload(w);
    figures.add('recorded operations', rec.end);
    const flush = rec.marks[4200]!;
    // The premise: that flush writes a header slot (after a map segment).
    expect(rec.fs.log.slice(flush.start, flush.end).some((op) => op.k === 'write' && op.pos < 8192)).toBe(true);
    const before = figures.failures.length;
    const tail = [...exhaustiveCases(rec)].filter((c) => c.point >= flush.start && c.policy.kind !== 'prefix');
    await explore(w, rec, tail, figures, { kind: 'exhaustive' });
    await explore(w, rec, randomCases(rec, new Rng(SEED ^ 4200), Math.ceil(RANDOM_STATES / 10)), figures, { kind: 'random' });
    await explore(w, rec, randomCases(rec, new Rng(SEED ^ 4201), Math.ceil(RANDOM_STATES / 20), 'sector'), figures, { kind: 'random, whole-sector tears' });
    const mine = figures.failures.slice(before);
    expect(mine, formatFailures(mine)).toEqual([]);
  });

  it('random operation sequences', async () => {
    const rng = new Rng(SEED);
    const before = figures.failures.length;
    for (let i = 0; i < 4; i++) {
      const w = randomChainWorkload((rng.next() * 2 ** 32) >>> 0);
      const rec = await recordWorkload(w);
      figures.add('recorded operations', rec.end);
      await explore(w, rec, randomCases(rec, rng.fork(), Math.ceil(RANDOM_STATES / 2)), figures, { kind: 'random sequences' });
      await explore(w, rec, randomCases(rec, rng.fork(), Math.ceil(RANDOM_STATES / 4), 'sector'), figures, { kind: 'random sequences, whole-sector tears' });
    }
    const mine = figures.failures.slice(before);
    expect(mine, formatFailures(mine)).toEqual([]);
  });
});

function hash(s: string): number {
  let h = 2166136261;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 16777619);
  return h >>> 0;
}
