/**
 * A merge reads the blocks it copies in file order, those close together with one
 * read. A backup's older anchor is the case it is for: a small layer of blocks
 * written in random order, a record each, merged into the large layer below when
 * the anchor is deleted. Block by block, its 100 blocks cost 100 reads. What the
 * merge copies reads back the same, and damage to a block read together with others
 * still stops it, leaving the disk as it was. The copy is written past the page
 * cache where it can be.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Disk } from '../../lib/index.js';
import { nodeFileSystem } from '../../lib/io/node-file-system.js';
import { FaultFS } from '../harness/fault-fs.js';
import { DirectProbeFS } from '../helpers/direct-fs.js';
import { Rng } from '../harness/rng.js';
import { deltaFiles, pattern } from '../helpers/disk.js';
import { tempDir } from '../helpers/temp-dir.js';

const BS = 64 * 1024;
const BLOCKS = 1024;
const CHANGED = 100;

let dir: string;
let cleanup: () => void;
let file: string;

beforeEach(() => {
  ({ dir, cleanup } = tempDir('deltadisk-merge-'));
  file = path.join(dir, 'disk.chain');
});
afterEach(() => cleanup());

/**
 * A disk of BLOCKS blocks, snapshot `old`, then CHANGED blocks changed in random
 * order (4 KiB each, so each is copied up whole into its own record), snapshot
 * `new`. Returns the changed blocks in the order written and the expected content.
 */
async function anchoredDisk(): Promise<{ changed: number[]; content: Buffer }> {
  const d = await Disk.create(file, { size: BLOCKS * BS, blockSize: BS });
  const content = pattern(BLOCKS * BS, 7);
  await d.write(0, content);
  await d.snapshot('old');
  const rng = new Rng(11);
  const changed: number[] = [];
  while (changed.length < CHANGED) {
    const b = rng.int(0, BLOCKS - 1);
    if (!changed.includes(b)) changed.push(b);
  }
  for (const b of changed) {
    const piece = Buffer.from(rng.bytes(4096));
    await d.write(b * BS + 512, piece);
    piece.copy(content, b * BS + 512);
  }
  await d.snapshot('new');
  await d.close();
  return { changed, content };
}

describe('a merge of a layer of scattered records', () => {
  it('copies with a few reads of the removed layer, and the disk reads the same after', async () => {
    const { content } = await anchoredDisk();
    const before = deltaFiles(dir);
    expect(before).toHaveLength(3);
    const removed = path.join(dir, before[1]!); // the small layer between the snapshots
    const traced = new FaultFS(nodeFileSystem, { trace: true });
    const d = await Disk.open(file, { fs: traced });
    traced.trace!.length = 0;
    await d.deleteSnapshot('old');
    const reads = traced.trace!.filter((t) => t === `read ${removed}`).length;
    expect(reads).toBeGreaterThan(0);
    expect(reads).toBeLessThan(CHANGED / 10);
    expect(d.snapshots().map((s) => s.name)).toEqual(['new']);
    expect((await d.read(0, BLOCKS * BS)).equals(content)).toBe(true);
    await d.close();

    expect(deltaFiles(dir)).toHaveLength(2);
    expect(fs.existsSync(removed)).toBe(false);
    const r = await Disk.open(file, { readOnly: true, verifyReads: true });
    expect((await r.read(0, BLOCKS * BS)).equals(content)).toBe(true);
    const snap = await r.openSnapshot('new');
    expect((await snap.read(0, BLOCKS * BS)).equals(content)).toBe(true);
    await snap.close();
    await r.close();
    expect((await Disk.check(file, { readData: true })).result).toBe('clean');
  });

  it('writes its copy past the page cache, and through it where direct writes are refused', async () => {
    for (const allowed of [Infinity, 0]) {
      fs.rmSync(dir, { recursive: true, force: true });
      fs.mkdirSync(dir);
      const { content } = await anchoredDisk();
      const probe = new DirectProbeFS(nodeFileSystem, allowed);
      const d = await Disk.open(file, { fs: probe });
      await d.deleteSnapshot('old');
      if (allowed === Infinity) expect(probe.directBytes).toBeGreaterThanOrEqual(CHANGED * BS);
      else expect(probe.plainBytes).toBeGreaterThanOrEqual(CHANGED * BS);
      expect((await d.read(0, BLOCKS * BS)).equals(content)).toBe(true);
      await d.close();
      const r = await Disk.open(file, { readOnly: true, verifyReads: true });
      expect((await r.read(0, BLOCKS * BS)).equals(content)).toBe(true);
      await r.close();
      expect((await Disk.check(file, { readData: true })).result).toBe('clean');
    }
  });

  it('stops at a damaged block read together with its neighbours, and leaves the layer unmerged', async () => {
    const { changed, content } = await anchoredDisk();
    const removed = path.join(dir, deltaFiles(dir)[1]!);
    // The block written 50th lies in the middle of the layer's records.
    const victim = changed[50]!;
    const probe = await Disk.open(file, { readOnly: true });
    const where = probe.currentReader().source(victim);
    await probe.close();
    if (where.kind !== 'data') throw new Error(`block ${victim} should be stored data`);
    const fd = fs.openSync(removed, 'r+');
    const byte = Buffer.alloc(1);
    fs.readSync(fd, byte, 0, 1, where.offset + 1000);
    fs.writeSync(fd, Buffer.from([byte[0]! ^ 0xff]), 0, 1, where.offset + 1000);
    fs.closeSync(fd);

    const d = await Disk.open(file);
    await expect(d.deleteSnapshot('old')).rejects.toMatchObject({ code: 'CHECKSUM_MISMATCH', block: victim });
    await d.close().catch(() => undefined);
    expect(fs.existsSync(removed)).toBe(true);
    expect(deltaFiles(dir)).toHaveLength(3);
    const r = await Disk.open(file, { readOnly: true });
    const damaged = Buffer.from(content);
    damaged[victim * BS + 1000]! ^= 0xff;
    expect((await r.read(0, BLOCKS * BS)).equals(damaged)).toBe(true);
    expect(r.snapshots().map((s) => s.name)).toEqual(['new']);
    await r.close();
    const report = await Disk.check(file, { readData: true });
    expect(report.findings.filter((f) => f.severity === 'corrupt').map((f) => f.kind)).toEqual(['checksum']);
  });
});
