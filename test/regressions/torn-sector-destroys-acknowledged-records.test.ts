/**
 * Regression: the delta log appended records back to back, so the first record of
 * a flush usually started inside the sector holding the end of the previous,
 * acknowledged flush. Under the power-loss model of SQLite's test6.c without
 * "powersafe overwrite" (a torn write leaves garbage over the *whole* sectors it
 * touches), a crash during the next, unacknowledged append could garble that shared
 * sector: the acknowledged record failed its CRC, the log ended before it, and an
 * acknowledged write was lost.
 *
 * Now every flush and every map segment ends the log on a 4 KiB boundary with a PAD
 * record, so no later write touches a sector holding acknowledged records (docs/
 * FORMAT.md). Here: the crash the explorer first found, then every point of the
 * workload with every pending write torn over whole sectors, 512 B and 4 KiB.
 *
 * Found by the crash explorer: workload "writes and flushes", crash right after op
 * #3 (the ZERO record of `zero(0, 4096)` appended at offset 37008), 512 B sectors.
 */
import { describe, expect, it } from 'vitest';
import { chainWorkloads } from '../harness/chain-workloads.js';
import { explore, recordWorkload, type CrashCase } from '../harness/crash-explorer.js';
import { Figures, formatFailures } from '../harness/figures.js';

describe('regression: a torn sector shared with acknowledged records', () => {
  it('keeps acknowledged writes when garbage covers the whole torn sector', async () => {
    const w = chainWorkloads().find((x) => x.name === 'writes and flushes')!;
    const rec = await recordWorkload(w);
    const figures = new Figures('regression');
    const point = rec.marks[4]!.end; // after zero(0, 4096) returned, before the flush
    await explore(w, rec, [{ point, policy: { kind: 'random', seed: 19520204, sectorSize: 512, tearScope: 'sector', pKeep: 0, pTear: 1 } }], figures, {
      kind: 'regression',
    });
    expect(figures.failures, figures.failureReport()).toEqual([]);
  });

  it('keeps them at every crash point with every pending write torn over whole sectors', async () => {
    const w = chainWorkloads().find((x) => x.name === 'writes and flushes')!;
    const rec = await recordWorkload(w);
    const figures = new Figures('regression');
    const cases: CrashCase[] = [];
    for (let point = 0; point <= rec.end; point++) {
      for (const sectorSize of [512, 4096] as const) {
        cases.push({ point, policy: { kind: 'random', seed: point * 2 + sectorSize, sectorSize, tearScope: 'sector', pKeep: 0, pTear: 1 } });
      }
    }
    await explore(w, rec, cases, figures, { kind: 'regression' });
    expect(figures.failures, formatFailures(figures.failures)).toEqual([]);
  });
});
