/**
 * Compaction in batches (compact.ts): a layer holding more than one batch of data,
 * with every kind of block it can hold (its own data, references into itself and
 * into its parent, zeros, and blocks overwritten since), reads the same after
 * compaction and after the deduplicating rewrite, and checks clean. The batches cut
 * runs of consecutive blocks, and rows whose CRCs are known (read from the layer)
 * lie next to blocks resolved through references (CRCs computed on append).
 */
import { createCipheriv, createHash } from 'node:crypto';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Disk } from '../../lib/index.js';
import { tempDir } from '../helpers/temp-dir.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const BS = 4 * KiB;
/** More than one compaction batch (15 MiB) of live data. */
const SIZE = 24 * MiB;

let dir: string;
let cleanup: () => void;
let file: string;

beforeEach(() => {
  ({ dir, cleanup } = tempDir('deltadisk-compact-batches-'));
  file = path.join(dir, 'disk.chain');
});
afterEach(() => cleanup());

function data(seed: string, n: number): Buffer {
  const c = createCipheriv('aes-256-ctr', createHash('sha256').update(seed).digest(), Buffer.alloc(16));
  return Buffer.concat([c.update(Buffer.alloc(n)), c.final()]);
}

const digest = async (d: Disk): Promise<string> => createHash('sha256').update(await d.read(0, d.virtualSize)).digest('hex');

describe('compaction in batches', () => {
  for (const rewrite of ['compact', 'dedupAll'] as const) {
    it(`keeps every kind of block across batches (${rewrite})`, async () => {
      const d = await Disk.create(file, { size: SIZE, blockSize: BS });
      try {
        // The parent: 1 MiB of its own.
        const parent = data('parent', MiB);
        await d.write(0, parent);
        await d.snapshot('base');
        // The layer: mostly its own data, with every 9th block a copy of a block of
        // the parent (a reference below), every 13th a copy of its last block (a
        // reference into itself, to content whose block comes later: compaction reads
        // it through the view, next to rows it reads itself), every 17th zeros.
        const layer = data('layer', SIZE);
        const last = SIZE - BS;
        for (let b = 0; b < SIZE / BS - 1; b++) {
          const at = b * BS;
          if (b % 9 === 4) parent.copy(layer, at, (b % 256) * BS, (b % 256) * BS + BS);
          else if (b % 13 === 5) layer.copy(layer, at, last, last + BS);
          else if (b % 17 === 6) layer.fill(0, at, at + BS);
        }
        // The block holding the content first, so the copies are references to it.
        await d.write(last, layer.subarray(last));
        for (let at = 0; at < SIZE; at += 4 * MiB) await d.write(at, layer.subarray(at, at + 4 * MiB));
        // Overwritten since: a third of the blocks, scattered, some with copies again.
        for (let b = 1; b < SIZE / BS; b += 3) {
          const block = b % 11 === 0 ? layer.subarray(0, BS) : data(`again:${b}`, BS);
          block.copy(layer, b * BS);
          await d.write(b * BS, block);
        }
        await d.flush();
        const before = createHash('sha256').update(layer).digest('hex');
        expect(await digest(d)).toBe(before);
        const result = rewrite === 'compact' ? await d.compact(0.01) : (await d.dedupAll()).layers;
        expect(result.length).toBeGreaterThan(0);
        const top = result.find((r) => r.bytesBefore > SIZE)!;
        expect(top.bytesAfter).toBeLessThan(top.bytesBefore);
        expect(await digest(d)).toBe(before);
        const snap = await d.openSnapshot('base');
        expect((await snap.read(0, MiB)).equals(parent)).toBe(true);
        await snap.close();
      } finally {
        await d.close();
      }
      const report = await Disk.check(file, { readData: true });
      expect(report.findings).toEqual([]);
      expect(report.result).toBe('clean');
      const again = await Disk.open(file, { readOnly: true, verifyReads: true });
      try {
        expect(await digest(again)).toBe(createHash('sha256').update(await again.read(0, SIZE)).digest('hex'));
      } finally {
        await again.close();
      }
    });
  }
});
