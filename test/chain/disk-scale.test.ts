/**
 * Memory follows the blocks held in deltas, not the virtual size: a 1 TiB disk with
 * a few thousand scattered blocks opens quickly and small. Heap plus array-buffer
 * memory is measured around Disk.open with forced garbage collection. Timing is
 * printed and only bounded loosely (an open proportional to the 2^28 blocks of the
 * virtual size would take minutes and gigabytes).
 */
import fs from 'node:fs';
import path from 'node:path';
import v8 from 'node:v8';
import vm from 'node:vm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Disk } from '../../lib/index.js';
import { pattern } from '../helpers/disk.js';
import { tempDir } from '../helpers/temp-dir.js';

v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as () => void;

const TiB = 2 ** 40;
const BS = 4096;
const BLOCKS = TiB / BS;
/** Scattered writes per layer; two layers. DELTADISK_SCALE_BLOCKS for a bigger run. */
const PER_LAYER = Number(process.env.DELTADISK_SCALE_BLOCKS) || 2000;

let dir: string;
let cleanup: () => void;
let file: string;
const written = new Map<number, number>();

function memory(): number {
  gc();
  gc();
  const m = process.memoryUsage();
  return m.heapUsed + m.arrayBuffers;
}

/** Block numbers spread over the whole disk (a multiplicative hash of i). */
const scattered = (i: number, salt: number) => Number((BigInt(i + 1) * 2654435761n * BigInt(salt)) % BigInt(BLOCKS));

beforeAll(async () => {
  ({ dir, cleanup } = tempDir('deltadisk-scale-'));
  file = path.join(dir, 'big.chain');
  const d = await Disk.create(file, { size: TiB, blockSize: BS, dedup: false });
  for (const [layer, salt] of [[0, 1], [1, 40503]] as const) {
    for (let i = 0; i < PER_LAYER; i++) {
      const b = scattered(i, salt);
      written.set(b, layer * PER_LAYER + i);
      await d.write(b * BS, pattern(BS, layer * PER_LAYER + i));
    }
    if (layer === 0) await d.snapshot('half');
  }
  await d.close();
});
afterAll(() => cleanup());

describe('a 1 TiB disk with a few thousand scattered blocks', () => {
  it('opens quickly, in memory proportional to its blocks, and reads them all back', async () => {
    const before = memory();
    const started = performance.now();
    const d = await Disk.open(file);
    const openMs = performance.now() - started;
    const grown = memory() - before;
    try {
      const blocks = written.size;
      console.log(
        `1 TiB disk, ${blocks} scattered 4 KiB blocks in 2 layers: open ${openMs.toFixed(0)} ms, ` +
          `+${(grown / 2 ** 20).toFixed(1)} MiB (${(grown / blocks / 1024).toFixed(1)} KiB per block); ` +
          `delta files ${(fs.readdirSync(dir).filter((f) => f.endsWith('.delta')).reduce((n, f) => n + fs.statSync(path.join(dir, f)).size, 0) / 2 ** 20).toFixed(1)} MiB`,
      );
      // Proportional to the virtual size would be ≥ 2^28 blocks × 10 bytes ≈ 2.5 GiB.
      expect(grown).toBeLessThan(32 * 1024 * blocks);
      expect(grown).toBeLessThan(256 * 2 ** 20);
      expect(openMs).toBeLessThan(10_000);
      expect(d.virtualSize).toBe(TiB);
      for (const [b, seed] of written) expect((await d.read(b * BS, BS)).equals(pattern(BS, seed)), `block ${b}`).toBe(true);
      // Untouched places anywhere on the disk read as zeros.
      expect((await d.read(TiB - BS, BS)).every((x) => x === 0) || written.has(BLOCKS - 1)).toBe(true);
      expect(d.extents().filter((e) => e.kind === 'data').length).toBeLessThanOrEqual(blocks);
    } finally {
      await d.close();
    }
  });

  it('a snapshot and a change map cost no time proportional to the size', async () => {
    const d = await Disk.open(file);
    try {
      const t = performance.now();
      await d.snapshot('now');
      const snapMs = performance.now() - t;
      const changed = await d.changedBlocks('half');
      console.log(`snapshot of the 1 TiB disk: ${snapMs.toFixed(1)} ms; change map of ${changed.length} blocks`);
      expect(changed.length).toBe(PER_LAYER);
      expect(snapMs).toBeLessThan(5_000);
    } finally {
      await d.close();
    }
  });
});
