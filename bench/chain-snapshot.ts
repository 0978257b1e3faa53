/**
 * Snapshot creation is O(1) in the size of the disk (issue 2): at most 20 ms at
 * 64 GiB virtual size, and no slower at 64 GiB than at 1 GiB. Each disk gets a few
 * thousand scattered written blocks first (BENCH_SNAPSHOT_BLOCKS, default 2000).
 */
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { Disk } from '../lib/index.js';
import { fail, GiB, report, scratchDir, time } from './bench-util.js';

const BLOCKS = Number(process.env.BENCH_SNAPSHOT_BLOCKS ?? 2000);
const ROUNDS = 20;

async function measure(dir: string, size: number): Promise<number> {
  const disk = await Disk.create(path.join(dir, `d${size}.chain`), { size });
  const bs = disk.blockSize;
  const blocks = size / bs;
  const written = new Map<number, Buffer>();
  const times: number[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    for (let i = 0; i < BLOCKS / ROUNDS; i++) {
      const b = Math.floor(Math.random() * blocks);
      const data = randomBytes(4096);
      await disk.write(b * bs, data);
      written.set(b, data);
    }
    const t = await time(() => disk.snapshot(`s${r}`));
    times.push(t.ms);
  }
  for (const [b, data] of written) if (!(await disk.read(b * bs, 4096)).equals(data)) fail(`block ${b} lost across snapshots`);
  if (disk.snapshots().length !== ROUNDS) fail('snapshots missing');
  await disk.close();
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)]!;
}

async function main(): Promise<void> {
  const { dir, cleanup } = scratchDir('snap');
  try {
    console.log(`snapshot create: median of ${ROUNDS}, each after ${BLOCKS / ROUNDS} scattered writes (includes flushing them)`);
    const small = await measure(dir, GiB);
    const large = await measure(dir, 64 * GiB);
    let ok = report({ name: 'snapshot create at 64 GiB', value: large, unit: 'ms', target: { max: 20 } });
    ok = report({ name: 'snapshot create at 64 GiB vs 1 GiB', value: large, unit: 'ms', baseline: { name: 'at 1 GiB', value: small } }) && ok;
    if (!ok) process.exitCode = 1;
  } finally {
    cleanup();
  }
}

await main();
