/**
 * Consolidation, dedup and check (issue 3):
 *  - deleting a snapshot whose layer holds 1 GiB of data, when the merge must move
 *    it (the child holds as much, so both directions copy 1 GiB): ≥ 0.5 x the speed
 *    of fs.copyFile of the same bytes (plus fsync, since a merge is durable); and
 *    the common case (small child: the cheaper commit direction is chosen);
 *  - the same 256 MiB of random data stored twice at different offsets stores at
 *    most 1.02 x 256 MiB; 256 MiB of zeros stores no data;
 *  - compacting a layer whose live 1 GiB lies scattered through a 2 GiB log (what a
 *    backup's anchors leave): ≥ 0.5 x the speed of fs.copyFile of 1 GiB;
 *  - check --read-data: ≥ 0.5 x the speed of hashing the same bytes with node:crypto.
 * Sizes: BENCH_SCALE (1 = 1 GiB / 256 MiB).
 */
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { Disk } from '../lib/index.js';
import { fail, GiB, MiB, mibps, report, scale, scratchDir, time } from './bench-util.js';

const LAYER = scale(GiB);
const DUP = scale(256 * MiB);
const CHUNK = 8 * MiB;

function randomChunk(i: number, pool: Buffer): Buffer {
  const c = Buffer.from(pool.subarray((i * 7919) % (pool.length - CHUNK), ((i * 7919) % (pool.length - CHUNK)) + CHUNK));
  for (let off = 0; off < CHUNK; off += 65536) c.writeUInt32LE(i * 1000 + off / 65536, off);
  return c;
}

async function digest(disk: { read(o: number, l: number): Promise<Buffer>; virtualSize: number }): Promise<string> {
  const h = createHash('sha256');
  for (let pos = 0; pos < disk.virtualSize; pos += CHUNK) h.update(await disk.read(pos, Math.min(CHUNK, disk.virtualSize - pos)));
  return h.digest('hex');
}

async function main(): Promise<void> {
  const { dir, cleanup } = scratchDir('maint');
  const pool = randomBytes(64 * MiB);
  let ok = true;
  try {
    // ---- merge speed
    console.log(`merge: delete a snapshot whose layer holds ${LAYER / MiB} MiB`);
    const file = path.join(dir, 'merge.chain');
    const disk = await Disk.create(file, { size: 2 * LAYER, dedup: false });
    for (let pos = 0, i = 0; pos < LAYER; pos += CHUNK, i++) await disk.write(pos, randomChunk(i, pool));
    await disk.snapshot('s1');
    for (let pos = 0, i = 10_000; pos < LAYER; pos += CHUNK, i++) await disk.write(LAYER + pos, randomChunk(i, pool));
    await disk.snapshot('s2');
    const before = await digest(disk);
    const layer1 = path.join(dir, disk.descriptor.layers[0]!.file);
    const copy = await time(async () => {
      await fs.promises.copyFile(layer1, path.join(dir, 'copy.delta'));
      const fd = fs.openSync(path.join(dir, 'copy.delta'), 'r+');
      fs.fsyncSync(fd);
      fs.closeSync(fd);
    });
    fs.rmSync(path.join(dir, 'copy.delta'));
    const merge = await time(() => disk.deleteSnapshot('s1'));
    if ((await digest(disk)) !== before) fail('the disk reads differently after the merge');
    const reader = await disk.openSnapshot('s2');
    if ((await digest(reader)) !== before) fail('snapshot s2 reads differently after the merge');
    await reader.close();
    if (disk.descriptor.layers.length !== 2) fail('the merged layer is still there');
    ok = report({ name: 'delete snapshot, 1 GiB moved', value: mibps(LAYER, merge.ms), unit: 'MiB/s', baseline: { name: 'fs.copyFile + fsync', value: mibps(LAYER, copy.ms) }, target: { ratio: 0.5 } }) && ok;
    await disk.close();

    // The common case: the child is small, so the cheaper commit direction is taken.
    const file2 = path.join(dir, 'common.chain');
    const d2 = await Disk.create(file2, { size: LAYER, dedup: false });
    for (let pos = 0, i = 0; pos < LAYER; pos += CHUNK, i++) await d2.write(pos, randomChunk(i, pool));
    await d2.snapshot('s1');
    await d2.write(12345, randomBytes(10 * MiB));
    const b2 = await digest(d2);
    const t2 = await time(() => d2.deleteSnapshot('s1'));
    if ((await digest(d2)) !== b2) fail('the disk reads differently after the commit merge');
    console.log(`delete snapshot, 1 GiB layer with a 10 MiB child (commit chosen): ${t2.ms.toFixed(0)} ms (fs.copyFile of the 1 GiB layer: ${copy.ms.toFixed(0)} ms)`);
    await d2.close();

    // ---- compaction: a layer whose every block was written again, in random order
    // (a backup's anchors leave the live blocks of a disk-sized layer scattered
    // through its log like this; there it takes ~100 backups of a 1 % change).
    const file3 = path.join(dir, 'compact.chain');
    const d3 = await Disk.create(file3, { size: LAYER, dedup: false });
    for (let pos = 0, i = 0; pos < LAYER; pos += CHUNK, i++) await d3.write(pos, randomChunk(i, pool));
    const blocks = Array.from({ length: LAYER / 65536 }, (_, b) => b);
    for (let k = blocks.length - 1; k > 0; k--) {
      const j = (k * 2654435761) % (k + 1);
      [blocks[k], blocks[j]] = [blocks[j]!, blocks[k]!];
    }
    for (const [k, b] of blocks.entries()) await d3.write(b * 65536, pool.subarray((k * 65536) % (pool.length - 65536), ((k * 65536) % (pool.length - 65536)) + 65536));
    const b3 = await digest(d3);
    const compacted = await time(() => d3.consolidate({ compactThreshold: 0.25 }));
    if (compacted.value.compacted.length !== 1) fail('the layer was not compacted');
    if ((await digest(d3)) !== b3) fail('the disk reads differently after compaction');
    const after = compacted.value.compacted[0]!;
    if (after.bytesAfter > after.bytesBefore * 0.55) fail(`compaction kept ${after.bytesAfter} of ${after.bytesBefore} bytes`);
    ok = report({ name: `compaction, ${LAYER / MiB} MiB live in random order (${(after.bytesBefore / MiB).toFixed(0)} -> ${(after.bytesAfter / MiB).toFixed(0)} MiB)`, value: mibps(LAYER, compacted.ms), unit: 'MiB/s', baseline: { name: 'fs.copyFile + fsync', value: mibps(LAYER, copy.ms) }, target: { ratio: 0.5 } }) && ok;
    await d3.close();

    // ---- dedup storage
    console.log(`dedup: the same ${DUP / MiB} MiB written twice, and ${DUP / MiB} MiB of zeros`);
    const dd = await Disk.create(path.join(dir, 'dedup.chain'), { size: 4 * DUP });
    const chunks: Buffer[] = [];
    for (let pos = 0, i = 0; pos < DUP; pos += CHUNK, i++) chunks.push(randomChunk(i + 50_000, pool));
    for (let i = 0; i < chunks.length; i++) await dd.write(i * CHUNK, chunks[i]!);
    for (let i = 0; i < chunks.length; i++) await dd.write(DUP + MiB + i * CHUNK, chunks[i]!); // shifted by 1 MiB
    await dd.flush();
    const afterTwice = await dd.info();
    for (let pos = 0; pos < DUP; pos += CHUNK) await dd.write(2 * DUP + MiB + pos, Buffer.alloc(CHUNK));
    await dd.flush();
    const afterZeros = await dd.info();
    for (let i = 0; i < chunks.length; i += 7) {
      if (!(await dd.read(DUP + MiB + i * CHUNK, CHUNK)).equals(chunks[i]!)) fail('a deduplicated chunk reads wrong');
    }
    ok = report({ name: 'stored for 256 MiB written twice', value: afterTwice.storedBytes / DUP, unit: 'x 256 MiB', target: { max: 1.02 } }) && ok;
    ok = report({ name: 'stored for 256 MiB of zeros', value: (afterZeros.storedBytes - afterTwice.storedBytes) / MiB, unit: 'MiB', target: { max: 0 } }) && ok;
    console.log(`  delta file size ${(afterZeros.allocatedBytes / MiB).toFixed(1)} MiB, saved by dedup ${(afterZeros.dedupSavedBytes / MiB).toFixed(0)} MiB`);
    await dd.close();

    // ---- check --read-data
    const checked = await time(() => Disk.check(file, { readData: true }));
    if (checked.value.result !== 'clean') fail(`check found ${checked.value.result}`);
    const bytes = checked.value.bytesVerified;
    const hashPool = Buffer.concat(Array.from({ length: 8 }, (_, i) => randomChunk(i, pool)));
    const hashed = await time(async () => {
      for (let done = 0; done < bytes; done += hashPool.length) createHash('sha256').update(hashPool.subarray(0, Math.min(hashPool.length, bytes - done))).digest();
    });
    ok = report({ name: `check --read-data (${(bytes / MiB).toFixed(0)} MiB)`, value: mibps(bytes, checked.ms), unit: 'MiB/s', baseline: { name: 'sha256 (node:crypto)', value: mibps(bytes, hashed.ms) }, target: { ratio: 0.5 } }) && ok;
  } finally {
    cleanup();
  }
  if (!ok) process.exitCode = 1;
}

await main();
