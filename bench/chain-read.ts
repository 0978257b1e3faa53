/**
 * Read speed of a deep chain (issue 2):
 *  - sequential read of a 1 GiB disk whose 50 layers each hold scattered writes,
 *    against the same content at depth 1 (target ≥ 0.9 x) and a plain fs read of a
 *    1 GiB raw file (target ≥ 0.5 x), all in 1 MiB requests into one reused buffer;
 *    and with a new buffer per request on both sides (no target: it measures the
 *    allocator as much as the disk);
 *  - random 4 KiB reads at queue depth 1 through the API, against random 4 KiB
 *    reads of the raw file (target ≥ 0.7 x);
 *  - both again with `verifyReads` (every block checked against its CRC; a 4 KiB
 *    read then reads its whole 64 KiB block), against the same without it.
 * Sizes: BENCH_SCALE (default 1 = 1 GiB), BENCH_LAYERS (50), BENCH_RANDOM_READS (100000).
 */
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { Disk } from '../lib/index.js';
import { best, fail, GiB, MiB, mibps, report, scale, scratchDir, writeRandomFile } from './bench-util.js';

const SIZE = scale(GiB);
const LAYERS = Number(process.env.BENCH_LAYERS ?? 50);
const RANDOM_READS = Number(process.env.BENCH_RANDOM_READS ?? 100_000);
const BS = 64 * 1024;
const CHUNK = MiB;

/** Hashes the disk read with `read` (new buffers) and `readInto` (one buffer); both must agree. */
async function readAllDisk(disk: Disk): Promise<string> {
  const h = createHash('sha256');
  const h2 = createHash('sha256');
  const buf = Buffer.allocUnsafe(CHUNK);
  for (let pos = 0; pos < disk.virtualSize; pos += CHUNK) {
    const n = Math.min(CHUNK, disk.virtualSize - pos);
    h.update(await disk.read(pos, n));
    await disk.readInto(buf.subarray(0, n), pos);
    h2.update(buf.subarray(0, n));
  }
  const digest = h.digest('hex');
  if (h2.digest('hex') !== digest) fail('read and readInto disagree');
  return digest;
}

/** The raw baseline uses the cheapest plain-Node read: fs.read with a callback. */
function pread(fd: number, buf: Buffer, len: number, pos: number): Promise<number> {
  return new Promise((resolve, reject) => fs.read(fd, buf, 0, len, pos, (err, n) => (err ? reject(err) : resolve(n))));
}

/** Reads the whole file in 1 MiB requests, into one buffer or (`fresh`) a new one each. */
async function readAllRaw(file: string, hash: boolean, fresh = false): Promise<string> {
  const fd = fs.openSync(file, 'r');
  const h = createHash('sha256');
  let buf = Buffer.allocUnsafe(CHUNK);
  try {
    for (let pos = 0; pos < SIZE; pos += CHUNK) {
      if (fresh) buf = Buffer.allocUnsafe(CHUNK);
      const n = await pread(fd, buf, Math.min(CHUNK, SIZE - pos), pos);
      if (hash) h.update(buf.subarray(0, n));
    }
  } finally {
    fs.closeSync(fd);
  }
  return h.digest('hex');
}

async function main(): Promise<void> {
  const { dir, cleanup } = scratchDir('read');
  try {
    console.log(`chain read: ${SIZE / MiB} MiB disk, ${LAYERS} layers of scattered writes, block size ${BS / 1024} KiB`);
    const base = path.join(dir, 'base.raw');
    writeRandomFile(base, SIZE);
    const reference = path.join(dir, 'reference.raw');
    fs.copyFileSync(base, reference);
    const refFd = fs.openSync(reference, 'r+');

    // The deep chain: each layer rewrites ~1 % of the blocks at random places.
    const deep = await Disk.create(path.join(dir, 'deep.chain'), { base, blockSize: BS });
    const blocks = SIZE / BS;
    const perLayer = Math.max(1, Math.round(blocks / 100));
    const changed = new Set<number>();
    for (let l = 0; l < LAYERS; l++) {
      for (let i = 0; i < perLayer; i++) {
        const b = Math.floor(Math.random() * blocks);
        const data = randomBytes(BS);
        await deep.write(b * BS, data);
        fs.writeSync(refFd, data, 0, BS, b * BS);
        changed.add(b);
      }
      await deep.snapshot(`layer-${l}`);
    }
    fs.fsyncSync(refFd);
    fs.closeSync(refFd);
    await deep.close();

    // The same content at depth 1: one layer holding every changed block.
    const flat = await Disk.create(path.join(dir, 'flat.chain'), { base, blockSize: BS });
    const refData = fs.openSync(reference, 'r');
    const buf = Buffer.allocUnsafe(BS);
    for (const b of [...changed].sort((x, y) => x - y)) {
      fs.readSync(refData, buf, 0, BS, b * BS);
      await flat.write(b * BS, buf);
    }
    fs.closeSync(refData);
    await flat.close();

    const deepDisk = await Disk.open(path.join(dir, 'deep.chain'), { readOnly: true });
    const flatDisk = await Disk.open(path.join(dir, 'flat.chain'), { readOnly: true });
    const info = await deepDisk.info();
    console.log(`deep chain: depth ${info.depth}, ${changed.size} distinct blocks rewritten (${((100 * changed.size) / blocks).toFixed(1)} %)`);

    // Verify before timing: all three read the same bytes.
    const expected = await readAllRaw(reference, true);
    if ((await readAllDisk(deepDisk)) !== expected) fail('the deep chain does not read like the reference file');
    if ((await readAllDisk(flatDisk)) !== expected) fail('the depth-1 chain does not read like the reference file');

    // Like for like: every reader fills one reused 1 MiB buffer (`readInto`, and
    // fs.read into a buffer), as a server or a copy loop does. Then the same with a
    // new buffer per request (`read`), against fs.read into a new buffer: fresh
    // memory costs page faults on both sides.
    const into = Buffer.allocUnsafe(CHUNK);
    const raw = await best(2, () => readAllRaw(reference, false));
    const d1 = await best(2, async () => {
      for (let pos = 0; pos < SIZE; pos += CHUNK) await flatDisk.readInto(into, pos);
    });
    const d50 = await best(2, async () => {
      for (let pos = 0; pos < SIZE; pos += CHUNK) await deepDisk.readInto(into, pos);
    });
    const rawFresh = await best(2, () => readAllRaw(reference, false, true));
    const d50Fresh = await best(2, async () => {
      for (let pos = 0; pos < SIZE; pos += CHUNK) await deepDisk.read(pos, CHUNK);
    });
    let ok = true;
    ok = report({ name: `sequential read, depth ${info.depth}`, value: mibps(SIZE, d50.ms), unit: 'MiB/s', baseline: { name: 'depth 1', value: mibps(SIZE, d1.ms) }, target: { ratio: 0.9 } }) && ok;
    ok = report({ name: `sequential read, depth ${info.depth}`, value: mibps(SIZE, d50.ms), unit: 'MiB/s', baseline: { name: 'raw file (fs)', value: mibps(SIZE, raw.ms) }, target: { ratio: 0.5 } }) && ok;
    report({ name: `sequential read, depth ${info.depth}, new buffer per request`, value: mibps(SIZE, d50Fresh.ms), unit: 'MiB/s', baseline: { name: 'raw file (fs), new buffer per request', value: mibps(SIZE, rawFresh.ms) } });

    // Random 4 KiB reads at queue depth 1.
    const offsets = Array.from({ length: RANDOM_READS }, () => Math.floor(Math.random() * (SIZE / 4096)) * 4096);
    const sample = offsets.slice(0, 200);
    const rawFd = fs.openSync(reference, 'r');
    const small = Buffer.allocUnsafe(4096);
    for (const off of sample) {
      await pread(rawFd, small, 4096, off);
      if (!(await deepDisk.read(off, 4096)).equals(small)) fail(`random read at ${off} differs`);
    }
    const rawRand = await best(1, async () => {
      for (const off of offsets) await pread(rawFd, small, 4096, off);
    });
    const chainRand = await best(1, async () => {
      for (const off of offsets) await deepDisk.read(off, 4096);
    });
    fs.closeSync(rawFd);
    const iops = (ms: number): number => RANDOM_READS / (ms / 1000);
    ok = report({ name: `random 4 KiB reads QD1, depth ${info.depth}`, value: iops(chainRand.ms), unit: 'IOPS', baseline: { name: 'raw file (fs)', value: iops(rawRand.ms) }, target: { ratio: 0.7 } }) && ok;

    // The price of verifying every block read (no target: it is an option).
    const verifying = await Disk.open(path.join(dir, 'deep.chain'), { readOnly: true, verifyReads: true });
    if ((await readAllDisk(verifying)) !== expected) fail('the deep chain, verifying, does not read like the reference file');
    const d50v = await best(2, async () => {
      for (let pos = 0; pos < SIZE; pos += CHUNK) await verifying.readInto(into, pos);
    });
    const randV = await best(1, async () => {
      for (const off of offsets) await verifying.read(off, 4096);
    });
    await verifying.close();
    report({ name: `sequential read, depth ${info.depth}, verifyReads`, value: mibps(SIZE, d50v.ms), unit: 'MiB/s', baseline: { name: 'without', value: mibps(SIZE, d50.ms) } });
    report({ name: `random 4 KiB reads QD1, depth ${info.depth}, verifyReads`, value: iops(randV.ms), unit: 'IOPS', baseline: { name: 'without', value: iops(chainRand.ms) } });

    await deepDisk.close();
    await flatDisk.close();
    if (!ok) process.exitCode = 1;
  } finally {
    cleanup();
  }
}

await main();
