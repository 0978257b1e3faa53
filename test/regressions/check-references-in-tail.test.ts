/**
 * Found by the model test: a read-only open (as `check` does) did not hash the
 * unindexed tail, so a deduplicated block referring into that tail could not be
 * resolved and the check reported the disk corrupt.
 */
import { expect, it } from 'vitest';
import { Disk, MemoryFileSystem } from '../../lib/index.js';

it('check resolves references into the unindexed tail of an open disk', async () => {
  const fs = new MemoryFileSystem();
  await fs.mkdirp('/d');
  const disk = await Disk.create('/d/disk.chain', { fs, size: 12 * 4096, blockSize: 4096 });
  await disk.write(8192, new Uint8Array(8192).fill(1)); // two identical blocks: DATA + REF
  const report = await Disk.check('/d/disk.chain', { fs, readData: true });
  expect(report.findings).toEqual([]);
  expect(report.result).toBe('clean');
  const reader = await Disk.open('/d/disk.chain', { fs, readOnly: true });
  expect(Buffer.from(await reader.read(12288, 4096)).equals(Buffer.alloc(4096, 1))).toBe(true);
  await reader.close();
  await disk.close();
});
