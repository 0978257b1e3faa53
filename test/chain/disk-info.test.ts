/**
 * info() accounting checked against the files and the writes made, and dedup on
 * versus off: the same writes store one copy with dedup and every copy without,
 * and both read back the same.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Disk } from '../../lib/index.js';
import { deltaFiles, pattern } from '../helpers/disk.js';
import { tempDir } from '../helpers/temp-dir.js';

const BS = 4096;
const BLOCKS = 64;
const SIZE = BLOCKS * BS;

let dir: string;
let cleanup: () => void;
const disks: Disk[] = [];

beforeEach(() => {
  ({ dir, cleanup } = tempDir('deltadisk-info-'));
});
afterEach(async () => {
  for (const d of disks.splice(0)) await d.close().catch(() => undefined);
  cleanup();
});

async function create(name: string, dedup = true, base?: string): Promise<Disk> {
  const d = await Disk.create(path.join(dir, `${name}.chain`), base === undefined ? { size: SIZE, blockSize: BS, dedup } : { base, blockSize: BS, dedup });
  disks.push(d);
  return d;
}

const filesBytes = (prefix: string) => deltaFiles(dir).filter((f) => f.startsWith(`${prefix}-`)).reduce((n, f) => n + fs.statSync(path.join(dir, f)).size, 0);

describe('info()', () => {
  it('describes a new disk', async () => {
    const d = await create('d');
    const info = await d.info();
    expect(info).toMatchObject({
      path: path.join(dir, 'd.chain'),
      virtualSize: SIZE,
      blockSize: BS,
      dedup: true,
      base: null,
      depth: 1,
      layerCount: 1,
      snapshotCount: 0,
      storedBytes: 0,
      dedupSavedBytes: 0,
    });
    expect(info.layers).toEqual([
      expect.objectContaining({ file: 'd-000001.delta', parent: null, snapshot: null, active: true, current: true, dataBlocks: 0, zeroBlocks: 0, refBlocks: 0, garbageBytes: 0 }),
    ]);
    expect(info.allocatedBytes).toBe(filesBytes('d'));
  });

  it('counts data, zero and garbage blocks, and allocated bytes as the files\' sizes', async () => {
    const d = await create('d');
    await d.write(0, pattern(3 * BS, 1)); // 3 data blocks
    await d.write(10 * BS, pattern(BS, 2));
    await d.writeZeroes(10 * BS, BS); // data → zero
    await d.writeZeroes(20 * BS, 2 * BS); // already zero: nothing stored
    await d.write(BS, pattern(BS, 3)); // overwrite: the old copy becomes garbage
    await d.flush();
    const info = await d.info();
    expect(info.layers[0]).toMatchObject({ dataBlocks: 3, zeroBlocks: 1, refBlocks: 0 });
    expect(info.layers[0]!.garbageBytes).toBe(2 * BS); // block 1's first copy and block 10's data
    expect(info.storedBytes).toBe(3 * BS);
    expect(info.allocatedBytes).toBe(filesBytes('d'));
    expect(info.layers[0]!.fileBytes).toBe(filesBytes('d'));
  });

  it('describes every layer of a branched tree', async () => {
    const d = await create('d');
    await d.write(0, pattern(BS, 1));
    await d.snapshot('a');
    await d.write(BS, pattern(2 * BS, 2));
    await d.snapshot('b');
    await d.revert('a');
    await d.write(5 * BS, pattern(BS, 3));
    const info = await d.info();
    expect([info.depth, info.layerCount, info.snapshotCount]).toEqual([2, 3, 2]);
    const byName = (n: string | null) => info.layers.filter((l) => l.snapshot === n);
    const a = byName('a')[0]!;
    const b = byName('b')[0]!;
    const active = info.layers.find((l) => l.active)!;
    expect(a).toMatchObject({ parent: null, current: true, active: false, dataBlocks: 1 });
    expect(b).toMatchObject({ parent: a.id, current: false, active: false, dataBlocks: 2 });
    expect(active).toMatchObject({ parent: a.id, current: true, snapshot: null, dataBlocks: 1 });
    expect(info.storedBytes).toBe(4 * BS);
    expect(info.allocatedBytes).toBe(filesBytes('d'));
  });

  it('names a raw base by its recorded file and size', async () => {
    fs.writeFileSync(path.join(dir, 'base.raw'), pattern(SIZE, 9));
    const d = await create('d', true, path.join(dir, 'base.raw'));
    expect((await d.info()).base).toEqual({ file: 'base.raw', size: SIZE });
  });

  it('is the same after reopening', async () => {
    const d = await create('d');
    await d.write(0, pattern(5 * BS, 1));
    await d.write(7 * BS, pattern(BS, 1)); // a duplicate of block 0
    await d.snapshot('s');
    await d.writeZeroes(0, BS);
    const before = await d.info();
    await d.close();
    const again = await Disk.open(path.join(dir, 'd.chain'));
    disks.push(again);
    const after = await again.info();
    expect({ ...after, allocatedBytes: 0, layers: after.layers.map((l) => ({ ...l, fileBytes: 0 })) }).toEqual({
      ...before,
      allocatedBytes: 0,
      layers: before.layers.map((l) => ({ ...l, fileBytes: 0 })),
    });
  });
});

describe('dedup on versus off', () => {
  async function workload(d: Disk): Promise<Buffer> {
    const same = pattern(BS, 42);
    for (let i = 0; i < 10; i++) await d.write(i * BS, same); // ten writes of one content
    await d.write(20 * BS, Buffer.concat([same, same, same])); // three more in one write
    await d.snapshot('s');
    await d.write(30 * BS, same); // and one in a later layer
    await d.write(31 * BS, pattern(BS, 43)); // one unique block
    await d.flush();
    return d.read(0, SIZE);
  }

  it('dedup stores one copy and references for the rest; without it every copy is stored', async () => {
    const on = await create('on', true);
    const off = await create('off', false);
    const contentOn = await workload(on);
    const contentOff = await workload(off);
    expect(contentOn.equals(contentOff)).toBe(true);

    const iOn = await on.info();
    const iOff = await off.info();
    expect(iOn.storedBytes).toBe(2 * BS);
    expect(iOn.dedupSavedBytes).toBe(13 * BS);
    expect(iOn.layers.map((l) => [l.dataBlocks, l.refBlocks])).toEqual([
      [1, 12],
      [1, 1],
    ]);
    expect(iOff.storedBytes).toBe(15 * BS);
    expect(iOff.dedupSavedBytes).toBe(0);
    expect(iOff.layers.every((l) => l.refBlocks === 0)).toBe(true);
    // The files say the same as the accounting.
    expect(filesBytes('off') - filesBytes('on')).toBeGreaterThanOrEqual(13 * BS - 13 * 200);

    await on.close();
    const again = await Disk.open(path.join(dir, 'on.chain'));
    disks.push(again);
    expect((await again.read(0, SIZE)).equals(contentOn)).toBe(true);
    const r = await again.openSnapshot('s');
    expect((await r.read(0, 30 * BS)).equals(contentOn.subarray(0, 30 * BS))).toBe(true);
    await r.close();
  });

  it('a deduplicated block overwritten later does not change the blocks that share its content', async () => {
    const d = await create('d', true);
    const same = pattern(BS, 5);
    await d.write(0, same);
    await d.write(BS, same);
    await d.write(2 * BS, same);
    await d.write(0, pattern(BS, 6)); // the stored copy's block is overwritten
    await d.writeZeroes(BS, BS);
    expect((await d.read(2 * BS, BS)).equals(same)).toBe(true);
    await d.snapshot('s');
    await d.deleteSnapshot('s');
    await d.close();
    const again = await Disk.open(path.join(dir, 'd.chain'));
    disks.push(again);
    expect((await again.read(2 * BS, BS)).equals(same)).toBe(true);
    expect((await again.read(0, BS)).equals(pattern(BS, 6))).toBe(true);
  });

  it('the dedup setting is kept in the disk and survives reopening', async () => {
    const off = await create('off', false);
    await off.close();
    const again = await Disk.open(path.join(dir, 'off.chain'));
    disks.push(again);
    expect(again.dedup).toBe(false);
    const same = pattern(BS, 1);
    await again.write(0, same);
    await again.write(BS, same);
    expect((await again.info()).layers[0]!.refBlocks).toBe(0);
  });
});

describe('info() accounting with references to overwritten content', () => {
  // DiskInfo.storedBytes is documented as "bytes of block data stored in the deltas
  // that some block still reads", but it counts only blocks mapped to DATA records.
  // When the block holding a deduplicated content is overwritten, the old copy stays
  // (a REF still reads it) yet drops out of storedBytes: info under-reports what the
  // disk needs. Left for the lead (dedup/compaction accounting is being reworked).
  it('storedBytes counts content that references still read after its own block moved on', async () => {
    const d = await create('d', true);
    const same = pattern(BS, 5);
    await d.write(0, same);
    await d.write(BS, same); // a REF to block 0's copy
    await d.write(0, pattern(BS, 6)); // block 0 moves on; its old copy is read by block 1 only
    const info = await d.info();
    expect(info.storedBytes).toBe(2 * BS);
  });
});
