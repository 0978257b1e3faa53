/**
 * Requests larger than the internal batches (plan pieces of up to 8 MiB, 8192-row
 * appends, 4096-row map segments, 2048-block records): unaligned, with and
 * without dedup, read back exactly before and after reopening.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Disk } from '../../lib/index.js';
import { pattern } from '../helpers/disk.js';
import { tempDir } from '../helpers/temp-dir.js';

const MiB = 1024 * 1024;

let dir: string;
let cleanup: () => void;
let file: string;

beforeEach(() => {
  ({ dir, cleanup } = tempDir('deltadisk-large-'));
  file = path.join(dir, 'disk.chain');
});
afterEach(() => cleanup());

async function reopened<T>(fn: (d: Disk) => Promise<T>): Promise<T> {
  const d = await Disk.open(file, { readOnly: true });
  try {
    return await fn(d);
  } finally {
    await d.close();
  }
}

describe('large requests', () => {
  it('a 20 MiB unaligned write of distinct blocks reads back exactly', async () => {
    const d = await Disk.create(file, { size: 64 * MiB, blockSize: 4096, dedup: false });
    const data = pattern(20 * MiB + 123, 1);
    await d.write(4095, data);
    expect((await d.read(4095, data.length)).equals(data)).toBe(true);
    expect((await d.read(0, 4095)).every((b) => b === 0)).toBe(true);
    await d.close();
    expect(await reopened(async (r) => (await r.read(4095, data.length)).equals(data))).toBe(true);
  });

  it('40 MiB of one repeated block with dedup: one copy, thousands of references, exact reads', async () => {
    const d = await Disk.create(file, { size: 64 * MiB, blockSize: 4096, dedup: true });
    const block = pattern(4096, 2);
    const data = Buffer.alloc(40 * MiB);
    for (let off = 0; off < data.length; off += 4096) block.copy(data, off);
    await d.write(8 * MiB, data);
    const info = await d.info();
    expect(info.layers[0]).toMatchObject({ dataBlocks: 1, refBlocks: 10 * 1024 - 1 });
    expect(info.allocatedBytes).toBeLessThan(2 * MiB);
    await d.snapshot('s');
    await d.writeZeroes(8 * MiB + 100, 30 * MiB); // partial blocks at both ends, zero runs between
    const expected = Buffer.alloc(64 * MiB);
    data.copy(expected, 8 * MiB);
    expected.fill(0, 8 * MiB + 100, 38 * MiB + 100);
    expect((await d.read(0, 64 * MiB)).equals(expected)).toBe(true);
    await d.close();
    await reopened(async (r) => {
      expect((await r.read(0, 64 * MiB)).equals(expected)).toBe(true);
      const s = await r.openSnapshot('s');
      expect((await s.read(8 * MiB, 40 * MiB)).equals(data)).toBe(true);
      await s.close();
    });
  });

  it('1 MiB blocks: a write spanning many of them, partially at both ends', async () => {
    const d = await Disk.create(file, { size: 48 * MiB + 5, blockSize: MiB });
    const data = pattern(30 * MiB + 77, 3);
    await d.write(MiB - 7, data);
    await d.write(48 * MiB, Buffer.from('tail!'));
    await d.close();
    await reopened(async (r) => {
      expect((await r.read(MiB - 7, data.length)).equals(data)).toBe(true);
      expect((await r.read(48 * MiB, 5)).toString()).toBe('tail!');
    });
  });

  it('a large verified read still finds a damaged block', async () => {
    const d = await Disk.create(file, { size: 16 * MiB, blockSize: 64 * 1024, dedup: false });
    const data = pattern(8 * MiB, 4);
    await d.write(0, data);
    const where = d.currentReader().source(100);
    await d.close();
    if (where.kind !== 'data') throw new Error('block 100 should be stored data');
    const delta = path.join(dir, fs.readdirSync(dir).find((f) => f.endsWith('.delta'))!);
    const fd = fs.openSync(delta, 'r+');
    fs.writeSync(fd, Buffer.from([0x5a ^ data[100 * 64 * 1024 + 77]!]), 0, 1, where.offset + 77);
    fs.closeSync(fd);
    const r = await Disk.open(file, { readOnly: true, verifyReads: true });
    try {
      await expect(r.read(0, 8 * MiB)).rejects.toMatchObject({ code: 'CHECKSUM_MISMATCH', block: 100 });
      expect((await r.read(0, 100 * 64 * 1024)).equals(data.subarray(0, 100 * 64 * 1024))).toBe(true);
      expect((await r.read(101 * 64 * 1024, MiB)).equals(data.subarray(101 * 64 * 1024, 101 * 64 * 1024 + MiB))).toBe(true);
    } finally {
      await r.close();
    }
  });
});
