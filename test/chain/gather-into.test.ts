/**
 * DiskReader.gatherInto: several ranges of a disk read as one request. The bytes are
 * those of reading each range alone, whatever the ranges (partial blocks, the base,
 * zeros, several layers, repeats, out of order), verified reads still find damage,
 * bad arguments are refused, and blocks scattered over the disk but stored side by
 * side in a layer (an incremental backup's changed blocks) cost a few reads.
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { MAX_GATHER_RANGES } from '../../lib/chain/disk-reader.js';
import { MAX_IO_LENGTH } from '../../lib/format/limits.js';
import { Disk } from '../../lib/index.js';
import type { FileHandle, FileSystem } from '../../lib/io/file-system.js';
import { nodeFileSystem } from '../../lib/io/node-file-system.js';
import { FaultFS } from '../harness/fault-fs.js';
import { Rng, seedFromEnv } from '../harness/rng.js';
import { deltaFiles } from '../helpers/disk.js';
import { tempDir } from '../helpers/temp-dir.js';

const BS = 4096;
const BLOCKS = 96;
let dir: string;
let cleanup: () => void;
let file: string;

beforeEach(() => {
  ({ dir, cleanup } = tempDir('deltadisk-gather-'));
  file = path.join(dir, 'd.chain');
});
afterEach(() => cleanup());

/** `inner` with every read and readv of an opened file going through `around`. */
function wrapReads(inner: FileSystem, around: (path: string, read: () => Promise<number>) => Promise<number>): FileSystem {
  const wrapHandle = (h: FileHandle): FileHandle =>
    new Proxy(h, {
      get(target, key): unknown {
        const v: unknown = Reflect.get(target, key);
        if (typeof v !== 'function') return v;
        if (key === 'read' || key === 'readv') return (...args: unknown[]) => around(target.path, () => (v as (...a: unknown[]) => Promise<number>).apply(target, args));
        return (v as (...a: unknown[]) => unknown).bind(target);
      },
    });
  return new Proxy(inner, {
    get(target, key): unknown {
      const v: unknown = Reflect.get(target, key);
      if (typeof v !== 'function') return v;
      if (key === 'open') return async (...args: unknown[]) => wrapHandle(await (v as (...a: unknown[]) => Promise<FileHandle>).apply(target, args));
      return (v as (...a: unknown[]) => unknown).bind(target);
    },
  });
}

/**
 * A disk on a base image, with a snapshot and writes, zeroes and partial writes in
 * random order above and below it: every kind of block source, in a file order
 * unlike the disk's.
 */
async function mixedDisk(rng: Rng): Promise<Disk> {
  const basePath = path.join(dir, 'base.raw');
  fs.writeFileSync(basePath, Buffer.from(rng.bytes(BLOCKS * BS)));
  const d = await Disk.create(file, { base: basePath, blockSize: BS });
  for (let layer = 0; layer < 2; layer++) {
    for (let k = 0; k < 40; k++) {
      const off = rng.int(0, BLOCKS * BS - 1);
      const len = Math.min(rng.int(1, 3 * BS), BLOCKS * BS - off);
      if (rng.bool(0.2)) await d.writeZeroes(off, len);
      else await d.write(off, Buffer.from(rng.bytes(len)));
    }
    if (layer === 0) await d.snapshot('s');
  }
  return d;
}

describe('gatherInto', () => {
  it('reads each range as read() does, for random ranges, verified or not', async () => {
    const seed = seedFromEnv();
    const rng = new Rng(seed);
    const d = await mixedDisk(rng);
    await d.close();
    for (const verifyReads of [false, true]) {
      const r = await Disk.open(file, { readOnly: true, verifyReads });
      const snap = await r.openSnapshot('s');
      try {
        for (const reader of [r.currentReader(), snap]) {
          for (let trial = 0; trial < 30; trial++) {
            const starts: number[] = [];
            const lengths: number[] = [];
            const count = rng.int(1, 12);
            for (let k = 0; k < count; k++) {
              // Block-aligned ranges mostly (what a backup asks for), some not, some empty.
              const aligned = rng.bool(0.6);
              const start = aligned ? rng.int(0, BLOCKS - 1) * BS : rng.int(0, BLOCKS * BS - 1);
              const length = aligned ? Math.min(rng.int(1, 4) * BS, BLOCKS * BS - start) : rng.int(0, Math.min(3 * BS, BLOCKS * BS - start));
              starts.push(start);
              lengths.push(length);
            }
            const want = Buffer.concat(await Promise.all(starts.map((s, k) => reader.read(s, lengths[k]!))));
            const got = Buffer.alloc(want.length, 0xee);
            await reader.gatherInto(got, starts, lengths);
            expect(got.equals(want), `seed ${seed}, verify ${verifyReads}, ranges ${JSON.stringify(starts.map((s, k) => [s, lengths[k]]))}`).toBe(true);
          }
        }
      } finally {
        await snap.close();
        await r.close();
      }
    }
  });

  it('refuses bad arguments with their codes, and reads nothing once closed', async () => {
    const d = await Disk.create(file, { size: BLOCKS * BS, blockSize: BS });
    const reader = d.currentReader();
    await expect(reader.gatherInto(Buffer.alloc(BS), [0, BS], [BS])).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(reader.gatherInto(Buffer.alloc(2 * BS), [0], [BS])).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(reader.gatherInto(new Uint8Array(BS) as Buffer, [0], [BS])).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(reader.gatherInto(Buffer.alloc(BS), [-1], [BS])).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(reader.gatherInto(Buffer.alloc(2), [BLOCKS * BS - 1], [2])).rejects.toMatchObject({ code: 'OUT_OF_RANGE' });
    // Each range may be read alone, but together they are more than one request may be.
    const starts = new Array<number>(1100).fill(0);
    const lengths = new Array<number>(1100).fill(BLOCKS * BS);
    await expect(reader.gatherInto(Buffer.alloc(0), starts, lengths)).rejects.toMatchObject({ code: 'LIMIT_EXCEEDED' });
    const many = new Array<number>(MAX_GATHER_RANGES + 1).fill(0);
    await expect(reader.gatherInto(Buffer.alloc(many.length), many, many.map(() => 1))).rejects.toMatchObject({ code: 'LIMIT_EXCEEDED' });
    await expect(reader.gatherInto(Buffer.alloc(BS), undefined as unknown as number[], [BS])).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(reader.gatherInto(Buffer.alloc(0), 5 as unknown as number[], 5 as unknown as number[])).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    const empty = Buffer.alloc(0);
    await reader.gatherInto(empty, [], []);
    await d.close();
    await expect(reader.gatherInto(Buffer.alloc(BS), [0], [BS])).rejects.toMatchObject({ code: 'NOT_OPEN' });
  });

  it('counts a partly read block whole: one-byte ranges of large blocks cannot add up to gigabytes', async () => {
    const big = 1024 * 1024;
    const d = await Disk.create(file, { size: 4 * big, blockSize: big });
    await d.close();
    const r = await Disk.open(file, { readOnly: true, verifyReads: true });
    try {
      const reader = r.currentReader();
      const n = MAX_IO_LENGTH / big + 1; // each touches a whole 1 MiB block: one more than a request may
      const starts = Array.from({ length: n }, (_, k) => (k % 4) * big + 7);
      await expect(reader.gatherInto(Buffer.alloc(n), starts, starts.map(() => 1))).rejects.toMatchObject({ code: 'LIMIT_EXCEEDED' });
      const out = Buffer.alloc(n - 1, 0xee);
      await reader.gatherInto(out, starts.slice(1), starts.slice(1).map(() => 1));
      expect(out.equals(Buffer.alloc(n - 1))).toBe(true);
    } finally {
      await r.close();
    }
  });

  it('has ended every read when a request fails', async () => {
    const bs = 64 * 1024;
    const d = await Disk.create(file, { size: 16 * bs, blockSize: bs });
    await d.write(0, randomBytes(16 * bs));
    await d.snapshot('s');
    await d.write(8 * bs, randomBytes(bs)); // block 8 in the top layer, the rest below
    await d.close();
    const [lower] = deltaFiles(dir);
    let armed = false;
    let inFlight = 0;
    // Reads of the lower layer fail at once; those of the top layer take 100 ms.
    const slowFs = wrapReads(nodeFileSystem, async (p, read) => {
      if (!armed) return read();
      if (p.endsWith(lower!)) throw Object.assign(new Error('injected'), { code: 'EIO' });
      inFlight++;
      try {
        await new Promise((resolve) => setTimeout(resolve, 100));
        return await read();
      } finally {
        inFlight--;
      }
    });
    const r = await Disk.open(file, { readOnly: true, fs: slowFs });
    try {
      armed = true;
      await expect(r.currentReader().gatherInto(Buffer.alloc(2 * bs), [8 * bs, 0], [bs, bs])).rejects.toMatchObject({ code: 'IO_ERROR' });
      expect(inFlight).toBe(0);
    } finally {
      armed = false;
      await r.close();
    }
  });

  it('finds a damaged block among the ones read together', async () => {
    const d = await Disk.create(file, { size: BLOCKS * BS, blockSize: BS, dedup: false });
    const data = randomBytes(BLOCKS * BS);
    for (let b = BLOCKS - 1; b >= 0; b--) await d.write(b * BS, data.subarray(b * BS, (b + 1) * BS));
    const where = d.currentReader().source(40);
    await d.close();
    if (where.kind !== 'data') throw new Error('block 40 should be stored data');
    const delta = path.join(dir, deltaFiles(dir)[0]!);
    const fd = fs.openSync(delta, 'r+');
    fs.writeSync(fd, Buffer.from([0x5a ^ data[40 * BS + 9]!]), 0, 1, where.offset + 9);
    fs.closeSync(fd);
    const r = await Disk.open(file, { readOnly: true, verifyReads: true });
    try {
      const reader = r.currentReader();
      await expect(reader.gatherInto(Buffer.alloc(3 * BS), [50 * BS, 40 * BS, 30 * BS], [BS, BS, BS])).rejects.toMatchObject({ code: 'CHECKSUM_MISMATCH', block: 40 });
      const out = Buffer.alloc(2 * BS);
      await reader.gatherInto(out, [50 * BS, 30 * BS], [BS, BS]);
      expect(out.equals(Buffer.concat([data.subarray(50 * BS, 51 * BS), data.subarray(30 * BS, 31 * BS)]))).toBe(true);
    } finally {
      await r.close();
    }
  });

  it('reads scattered blocks written one after another with a few reads, not one each', async () => {
    const bs = 64 * 1024;
    const blocks = 512;
    const d = await Disk.create(file, { size: blocks * bs, blockSize: bs });
    await d.write(0, randomBytes(blocks * bs));
    await d.snapshot('old');
    const rng = new Rng(5);
    const changed = new Set<number>();
    while (changed.size < 64) changed.add(rng.int(0, blocks - 1));
    // Partial writes, in random order: each block is copied up whole into a record of its own.
    for (const b of changed) await d.write(b * bs + 512, Buffer.from(rng.bytes(4096)));
    await d.snapshot('new');
    const sorted = [...changed].sort((a, b) => a - b);
    const want = Buffer.concat(await Promise.all(sorted.map((b) => d.read(b * bs, bs))));
    await d.close();
    const traced = new FaultFS(nodeFileSystem, { trace: true });
    const r = await Disk.open(file, { readOnly: true, verifyReads: true, fs: traced });
    const snap = await r.openSnapshot('new');
    try {
      // The layer 'new' froze: the one the changed blocks were written to.
      const top = path.join(dir, deltaFiles(dir)[1]!);
      traced.trace!.length = 0;
      const got = Buffer.alloc(want.length);
      await snap.gatherInto(got, sorted.map((b) => b * bs), sorted.map(() => bs));
      expect(got.equals(want)).toBe(true);
      const reads = traced.trace!.filter((t) => t.startsWith('read '));
      expect(new Set(reads)).toEqual(new Set([`read ${top}`]));
      expect(reads.length).toBeLessThanOrEqual(2);
    } finally {
      await snap.close();
      await r.close();
    }
  });
});
