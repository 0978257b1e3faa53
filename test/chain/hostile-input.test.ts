/**
 * Hostile and damaged input (issue 4): real chain files (a disk with every record
 * kind, and a crash state in the middle of a merge) mutated every way listed in
 * test/harness/chain-hostile.ts: every bit of the header slots, header, record and
 * map-segment fields set to 0, 2^31, 2^32, 2^53+1, 2^64-1 and friends with their
 * checksums recomputed, offsets past the end and overlapping, cuts at every
 * structure boundary, random flips in the metadata, and descriptor and state-record
 * mutations: self-parent, cycles, depth 513, parent id mismatch, paths escaping the
 * directory or naming a device.
 *
 * Each variant is opened read-only and writable and read whole; it must end in a
 * typed DeltaDiskError or read exactly what the model says (see chain-hostile.ts for
 * the one other legitimate ending), within 5 s, with no Buffer allocation above
 * 16 MiB and bounded process growth. The figures list how many variants ran and
 * how each ended.
 *
 * Size: DELTADISK_HOSTILE_FLIPS random metadata flips per fixture (default 300);
 * every bit of each header slot's fixed part and one bit of each payload byte by
 * default (CRC-32 catches every single-bit error, so payload flips all take one
 * path), every bit of everything with DELTADISK_HOSTILE_FULL=1.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  headerBitFlips,
  headerFieldMutations,
  indexedDataFlips,
  randomMetadataFlips,
  recordMutations,
  segmentMutations,
  truncations,
  type VariantOptions,
} from '../harness/chain-delta-mutations.js';
import { mergeFixture, richFixture, runVariant, type ChainFixture, type Variant } from '../harness/chain-hostile.js';
import { descriptorMutations, opStateMutations } from '../harness/chain-metadata-mutations.js';
import { Figures, formatFailures } from '../harness/figures.js';
import { AllocationWatch } from '../harness/hostile.js';
import { Rng, seedFromEnv, sizeFromEnv } from '../harness/rng.js';
import { Violation } from '../harness/workload.js';

const MAX_ALLOCATION = 16 * 1024 * 1024;
const MAX_RSS_GROWTH = 256 * 1024 * 1024;
const SEED = seedFromEnv();
const options = (): VariantOptions => ({
  allHeaderBits: process.env.DELTADISK_HOSTILE_FULL === '1',
  randomFlips: sizeFromEnv('DELTADISK_HOSTILE_FLIPS', 300),
  rng: new Rng(SEED),
});

const figures = new Figures('chain hostile input');
const watch = new AllocationWatch();
let rssBase = 0;
let rssPeak = 0;
let slowest = 0;
const fixtures: ChainFixture[] = [];

beforeAll(async () => {
  fixtures.push(await richFixture(), await mergeFixture('after switch'), await mergeFixture('before copy'));
  rssBase = process.memoryUsage().rss;
});

afterAll(() => {
  figures.add('largest Buffer allocation while parsing (bytes)', watch.largest);
  figures.add('peak RSS growth (MiB)', Math.round((rssPeak - rssBase) / 2 ** 20));
  figures.add('slowest variant (ms)', Math.ceil(slowest));
  console.log(`[deltadisk] hostile-input seed ${SEED} (replay with DELTADISK_SEED=${SEED})`);
  figures.publish();
});

async function runAll(fx: ChainFixture, variants: Iterable<Variant>): Promise<void> {
  const before = figures.failures.length;
  for (const v of variants) {
    const t = performance.now();
    figures.add('variants run');
    figures.add(`variants run: ${v.structure}`);
    try {
      const endings = await runVariant(fx, v, { watch });
      // Count each variant once, by its most telling ending.
      const ending = endings.find((e) => e.startsWith('typed')) ?? endings.find((e) => e.startsWith('older')) ?? endings[0]!;
      figures.add(`ended: ${ending}`);
    } catch (err) {
      figures.fail(`${fx.name}: ${v.structure}: ${v.mutation}`, err instanceof Violation ? err.message : String(err));
    }
    const ms = performance.now() - t;
    slowest = Math.max(slowest, ms);
    if (ms > 5000) figures.fail(`${fx.name}: ${v.structure}: ${v.mutation}`, `took ${Math.round(ms)} ms`);
    rssPeak = Math.max(rssPeak, process.memoryUsage().rss);
  }
  const mine = figures.failures.slice(before);
  expect(mine, formatFailures(mine)).toEqual([]);
  expect(watch.largest).toBeLessThanOrEqual(MAX_ALLOCATION);
  expect(rssPeak - rssBase).toBeLessThan(MAX_RSS_GROWTH);
}

/** Each class runs on the disk with every record kind and the merge after its switch; state records on both merge states. */
const classes: [string, (fx: ChainFixture) => Iterable<Variant>][] = [
  ['every bit of the header slots', (fx) => headerBitFlips(fx, options())],
  ['header fields', headerFieldMutations],
  ['record header fields', recordMutations],
  ['map segment fields', segmentMutations],
  ['cuts at every structure boundary', truncations],
  ['random metadata flips', (fx) => randomMetadataFlips(fx, options())],
  ['descriptor fields and shapes', descriptorMutations],
  ['operation state record fields', opStateMutations],
  // Reads without verifyReads do not check block CRCs, by decision (docs/DESIGN.md;
  // test/regressions/block-reads-skip-crc.test.ts covers verifyReads): counted, not failed.
  ['flips in indexed block data', (fx) => indexedDataFlips(fx, 20, new Rng(SEED))],
];

describe('chain files, damaged and hostile', () => {
  for (const [what, make] of classes) {
    it(what, async () => {
      const on = what.startsWith('operation state') ? fixtures.slice(1) : fixtures.slice(0, 2);
      for (const fx of on) await runAll(fx, make(fx));
    });
  }
});
