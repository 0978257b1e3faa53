/**
 * Write speed (issues 2 and 3): sequential 1 MiB writes into the active layer,
 * flushed at the end, against the same writes to a raw file with one fsync
 * (target ≥ 0.5 x); the cost of inline dedup (dedup on vs off, target: at most
 * 30 % slower; medians of three interleaved runs); and small random writes each followed by a flush (4 KiB writes at
 * 4 KiB and 64 KiB block sizes), against 4 KiB pwrite + fdatasync on a raw file,
 * with the delta bytes each write costs (no target: it shows what a flush costs).
 * Sizes: BENCH_SCALE (default 1 = 1 GiB), BENCH_FLUSHED_WRITES (default 2000).
 */
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { Disk } from '../lib/index.js';
import { fail, GiB, MiB, mibps, report, scale, scratchDir, time } from './bench-util.js';

const SIZE = scale(GiB);
const CHUNK = MiB;
const FLUSHED_WRITES = Number(process.env.BENCH_FLUSHED_WRITES ?? 2000);
const SMALL = 4096;

function pwrite(fd: number, buf: Buffer, pos: number): Promise<number> {
  return new Promise((resolve, reject) => fs.write(fd, buf, 0, buf.length, pos, (err, n) => (err ? reject(err) : resolve(n))));
}

/** Distinct random chunks: a pool rotated and stamped so no two chunks are equal. */
function chunkAt(pool: Buffer, i: number): Buffer {
  const start = (i * 4099) % (pool.length - CHUNK);
  const c = Buffer.from(pool.subarray(start, start + CHUNK));
  for (let off = 0; off < CHUNK; off += 65536) c.writeUInt32LE(i * 64 + off / 65536, off);
  return c;
}

async function main(): Promise<void> {
  const { dir, cleanup } = scratchDir('write');
  try {
    console.log(`chain write: ${SIZE / MiB} MiB in 1 MiB writes, flushed at the end, block size 64 KiB`);
    const pool = randomBytes(64 * MiB);
    const chunks = SIZE / CHUNK;
    const expected = createHash('sha256');
    for (let i = 0; i < chunks; i++) expected.update(chunkAt(pool, i));
    const digest = expected.digest('hex');

    const raw = await time(async () => {
      const fd = fs.openSync(path.join(dir, 'raw.img'), 'w');
      for (let i = 0; i < chunks; i++) await pwrite(fd, chunkAt(pool, i), i * CHUNK);
      fs.fsyncSync(fd);
      fs.closeSync(fd);
    });
    fs.rmSync(path.join(dir, 'raw.img'));

    const run = async (dedup: boolean): Promise<number> => {
      const file = path.join(dir, `disk-${dedup ? 'dedup' : 'plain'}.chain`);
      const disk = await Disk.create(file, { size: SIZE, dedup });
      const t = await time(async () => {
        for (let i = 0; i < chunks; i++) await disk.write(i * CHUNK, chunkAt(pool, i));
        await disk.flush();
      });
      const h = createHash('sha256');
      for (let pos = 0; pos < SIZE; pos += CHUNK) h.update(await disk.read(pos, CHUNK));
      if (h.digest('hex') !== digest) fail(`disk (dedup ${dedup}) does not read back what was written`);
      await disk.close();
      for (const f of fs.readdirSync(dir)) if (f.startsWith(`disk-${dedup ? 'dedup' : 'plain'}`)) fs.rmSync(path.join(dir, f));
      return t.ms;
    };
    // Dedup off and on, interleaved three times after a global sync each, medians
    // compared: one run each measured the device's writeback mood (the same run
    // varies 3x here) more than the cost of hashing.
    const plainRuns: number[] = [];
    const dedupRuns: number[] = [];
    for (let r = 0; r < 3; r++) {
      execFileSync('sync');
      plainRuns.push(await run(false));
      execFileSync('sync');
      dedupRuns.push(await run(true));
    }
    const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
    const plain = median(plainRuns);
    const dedup = median(dedupRuns);
    console.log(`  runs (ms), dedup off: ${plainRuns.map((x) => x.toFixed(0)).join(', ')}; dedup on: ${dedupRuns.map((x) => x.toFixed(0)).join(', ')}`);
    let ok = report({ name: 'sequential 1 MiB writes + flush, dedup off', value: mibps(SIZE, plain), unit: 'MiB/s', baseline: { name: 'raw file + fsync', value: mibps(SIZE, raw.ms) }, target: { ratio: 0.5 } });
    ok = report({ name: 'sequential 1 MiB writes + flush, dedup on', value: mibps(SIZE, dedup), unit: 'MiB/s', baseline: { name: 'raw file + fsync', value: mibps(SIZE, raw.ms) }, target: { ratio: 0.5 } }) && ok;
    ok = report({ name: 'inline dedup throughput', value: mibps(SIZE, dedup), unit: 'MiB/s', baseline: { name: 'dedup off', value: mibps(SIZE, plain) }, target: { ratio: 0.7 } }) && ok;
    await flushedSmallWrites(dir);
    if (!ok) process.exitCode = 1;
  } finally {
    cleanup();
  }
}

/** 4 KiB writes at random places, each followed by a flush: IOPS and delta bytes per write. */
async function flushedSmallWrites(dir: string): Promise<void> {
  const span = 256 * MiB;
  const offsets = Array.from({ length: FLUSHED_WRITES }, () => Math.floor(Math.random() * (span / SMALL)) * SMALL);
  const data = offsets.map(() => randomBytes(SMALL));
  const iops = (ms: number): number => FLUSHED_WRITES / (ms / 1000);
  const rawFile = path.join(dir, 'small.raw');
  const fd = fs.openSync(rawFile, 'w');
  const raw = await time(async () => {
    for (let i = 0; i < FLUSHED_WRITES; i++) {
      await pwrite(fd, data[i]!, offsets[i]!);
      await new Promise<void>((resolve, reject) => fs.fdatasync(fd, (err) => (err ? reject(err) : resolve())));
    }
  });
  fs.closeSync(fd);
  fs.rmSync(rawFile);
  for (const blockSize of [4096, 65536]) {
    const file = path.join(dir, `small-${blockSize}.chain`);
    const disk = await Disk.create(file, { size: span, blockSize, dedup: false });
    const t = await time(async () => {
      for (let i = 0; i < FLUSHED_WRITES; i++) {
        await disk.write(offsets[i]!, data[i]!);
        await disk.flush();
      }
    });
    const last = new Map<number, Buffer>();
    offsets.forEach((o, i) => last.set(o, data[i]!));
    for (const [o, d] of last) if (!(await disk.read(o, SMALL)).equals(d)) fail(`flushed small write at ${o} (block size ${blockSize}) does not read back`);
    const delta = (await disk.info()).layers.reduce((n, l) => n + l.fileBytes, 0);
    await disk.close();
    for (const f of fs.readdirSync(dir)) if (f.startsWith(`small-${blockSize}`)) fs.rmSync(path.join(dir, f));
    report({ name: `4 KiB random writes + flush each, block size ${blockSize / 1024} KiB`, value: iops(t.ms), unit: 'IOPS', baseline: { name: 'raw file pwrite + fdatasync', value: iops(raw.ms) } });
    console.log(`  delta bytes per flushed 4 KiB write, block size ${blockSize / 1024} KiB: ${Math.round((delta - 8192) / FLUSHED_WRITES)}`);
  }
}

await main();
