/**
 * Regression: opening a snapshot (a view built without a permanent hash index) lost
 * track of the layers pushed between the first layer holding references and a
 * later one. ChainView built its on-demand ("transient") index when the first layer
 * with REF records was pushed, but only added later layers to it when they, too,
 * held references; a REF in layer 3 to content stored in layer 2 (which held none)
 * then failed with CHAIN_CORRUPT "refers to content stored nowhere in its chain".
 *
 * Found by the model test (seed -1145407640): write(16384, 8192B #1), snapshot(s0),
 * write(8192, 4097B #2), snapshot(s3), discard(16383, 4096), snapshot(s2), reopen.
 */
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { Disk } from '../../lib/index.js';
import { tempDir } from '../helpers/temp-dir.js';

describe('regression: snapshot view over layers with and without references', () => {
  it('resolves a reference to a layer that holds no references itself', async () => {
    const { dir, cleanup } = tempDir();
    try {
      const p = path.join(dir, 'disk.chain');
      const bs = 4096;
      const disk = await Disk.create(p, { size: 12 * bs + 1000, blockSize: bs });
      // Layer 1: blocks 4 and 5 identical, so block 5 is a REF (layer 1 has references).
      await disk.write(4 * bs, new Uint8Array(2 * bs).fill(1));
      await disk.snapshot('s0');
      // Layer 2: block 3 becomes [2, 0, 0, …] (DATA, no references in this layer).
      await disk.write(2 * bs, new Uint8Array(bs + 1).fill(2));
      await disk.snapshot('s3');
      // Layer 3: rewriting block 3 with the same content makes a REF into layer 2.
      await disk.discard(4 * bs - 1, bs);
      await disk.snapshot('s2');
      const expected = await disk.read(0, disk.virtualSize);
      await disk.close();

      const again = await Disk.open(p);
      try {
        const reader = await again.openSnapshot('s2');
        try {
          expect(Buffer.compare(await reader.read(0, reader.virtualSize), expected)).toBe(0);
        } finally {
          await reader.close();
        }
      } finally {
        await again.close();
      }
    } finally {
      cleanup();
    }
  });
});
