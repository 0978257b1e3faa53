/**
 * Found by the model test: on a raw base, two discards of partial blocks followed
 * by the offline dedup pass reported "refers to content stored nowhere".
 */
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { expect, it } from 'vitest';
import { Disk, MemoryFileSystem } from '../../lib/index.js';
import { DiskModel } from '../../lib/testing/index.js';

it('dedup pass after discards of partial blocks on a raw base', async () => {
  const fs = new MemoryFileSystem();
  await fs.mkdirp('/d');
  const size = 12 * 4096 + 1000;
  const base = randomBytes(size);
  const h = await fs.open('/d/base.raw', 'createExclusive');
  await h.write([base], 0);
  await h.close();
  const disk = await Disk.create(path.join('/d', 'disk.chain'), { fs, base: '/d/base.raw', blockSize: 4096 });
  const model = new DiskModel(size, 4096, base);
  await disk.snapshot('s0');
  model.snapshot('s0');
  await disk.discard(24577, 4096);
  model.zero(24577, 4096);
  await disk.discard(28671, 1);
  model.zero(28671, 1);
  await disk.dedupAll();
  expect(Buffer.from(await disk.read(0, size)).equals(Buffer.from(model.read(0, size)))).toBe(true);
  await disk.close();
});

/**
 * Found by the model test (600 runs): compaction joined a DATA run whose hashes were
 * unknown with one whose hashes were known and dropped them, so a reference to the
 * second dangled after reopening.
 */
it('compaction keeps known hashes when joining runs', async () => {
  const fs = new MemoryFileSystem();
  await fs.mkdirp('/d');
  const size = 12 * 4096 + 1000;
  const base = randomBytes(size);
  const h = await fs.open('/d/base.raw', 'createExclusive');
  await h.write([base], 0);
  await h.close();
  const disk = await Disk.create('/d/disk.chain', { fs, base: '/d/base.raw', blockSize: 4096, dedup: false });
  const model = new DiskModel(size, 4096, base);
  const ops: [number, Uint8Array | number][] = [
    [12288, new Uint8Array(8193).fill(1)],
    [32711, new Uint8Array(10921).fill(1)],
  ];
  for (const [off, data] of ops) {
    await disk.write(off, data as Uint8Array);
    model.write(off, data as Uint8Array);
  }
  await disk.dedupAll();
  await disk.discard(15010, 9567);
  model.zero(15010, 9567);
  await disk.consolidate({ maxDepth: 1 });
  await disk.close();
  const again = await Disk.open('/d/disk.chain', { fs });
  expect(Buffer.from(await again.read(0, size)).equals(Buffer.from(model.read(0, size)))).toBe(true);
  await again.close();
});
