/**
 * ChainView: one merged map over a base and a path of layers. Reads of adjacent
 * blocks stored contiguously are coalesced into one pread, zero blocks cost no I/O
 * and read as zeros (never stale buffer bytes), references resolve to the stored
 * copy, and the range checks give their documented codes. Real layer files; pread
 * calls counted through a pass-through file system.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openRawBase, zeroBase, type BaseImage } from '../../lib/chain/base-image.js';
import { ChainView } from '../../lib/chain/chain-view.js';
import { LayerFile, sha256 } from '../../lib/chain/layer-file.js';
import { isDeltaDiskError } from '../../lib/errors.js';
import { MAX_IO_LENGTH } from '../../lib/format/limits.js';
import { RecordKind } from '../../lib/format/record.js';
import { nodeFileSystem } from '../../lib/io/node-file-system.js';
import { FaultFS } from '../harness/fault-fs.js';
import { tempDir } from '../helpers/temp-dir.js';

const BS = 4096;
const BLOCKS = 64;
const SIZE = BLOCKS * BS;
const DISK = '00000000-1111-4222-8333-444444444444';

let dir: string;
let cleanup: () => void;
let ffs: FaultFS;
const layers: LayerFile[] = [];
const bases: BaseImage[] = [];

beforeEach(() => {
  ({ dir, cleanup } = tempDir('deltadisk-view-'));
  ffs = new FaultFS(nodeFileSystem, { trace: true });
});
afterEach(async () => {
  for (const l of layers.splice(0)) await l.release();
  for (const b of bases.splice(0)) await b.release();
  cleanup();
});

async function layer(n: number, size = SIZE): Promise<LayerFile> {
  const l = await LayerFile.create(ffs, dir, `l${n}.delta`, {
    diskId: DISK,
    layerId: randomUUID(),
    parentId: null,
    parentFile: null,
    base: null,
    blockSize: BS,
    virtualSize: size,
  });
  layers.push(l);
  return l;
}

async function rawBase(content: Buffer): Promise<BaseImage> {
  const p = path.join(dir, 'base.raw');
  fs.writeFileSync(p, content);
  const { base } = await openRawBase(ffs, p);
  bases.push(base);
  return base;
}

const blocks = (n: number, fill: number) => Array.from({ length: n }, (_, i) => Buffer.alloc(BS, fill + i));

/** Counts preads made during `fn`, per file name. */
async function preads<T>(fn: () => Promise<T>): Promise<{ result: T; reads: string[] }> {
  const start = ffs.trace!.length;
  const result = await fn();
  const reads = ffs.trace!.slice(start).filter((c) => c.startsWith('read ')).map((c) => path.basename(c.slice(5)));
  return { result, reads };
}

describe('ChainView reads', () => {
  it('adjacent blocks of one record are read with one pread', async () => {
    const l = await layer(1);
    await l.append([{ kind: RecordKind.DATA, block: 8, data: blocks(8, 0x10) }]);
    const view = ChainView.build(zeroBase, [l], SIZE, BS, { indexHashes: false });
    const { result, reads } = await preads(() => view.read(8 * BS, 8 * BS));
    expect(reads).toEqual(['l1.delta']);
    expect(result.equals(Buffer.concat(blocks(8, 0x10)))).toBe(true);
  });

  it('an unaligned read across blocks of one record is still one pread', async () => {
    const l = await layer(1);
    await l.append([{ kind: RecordKind.DATA, block: 0, data: blocks(4, 0x20) }]);
    const view = ChainView.build(zeroBase, [l], SIZE, BS, { indexHashes: false });
    const { result, reads } = await preads(() => view.read(BS - 10, 2 * BS + 20));
    expect(reads).toHaveLength(1);
    expect(result.equals(Buffer.concat(blocks(4, 0x20)).subarray(BS - 10, 3 * BS + 10))).toBe(true);
  });

  it('verifying, an unaligned read still reads its blocks with one call, each checked against its CRC', async () => {
    const l = await layer(1);
    await l.append([{ kind: RecordKind.DATA, block: 0, data: blocks(4, 0x20) }]);
    await l.sync();
    const view = ChainView.build(zeroBase, [l], SIZE, BS, { indexHashes: false });
    const { result, reads } = await preads(() => view.read(BS - 10, 2 * BS + 20, true));
    expect(reads).toHaveLength(1);
    expect(result.equals(Buffer.concat(blocks(4, 0x20)).subarray(BS - 10, 3 * BS + 10))).toBe(true);
    // One byte of block 2 damaged on disk: every verified read touching block 2 fails.
    const p = path.join(dir, l.file);
    const fd = fs.openSync(p, 'r+');
    fs.writeSync(fd, Buffer.from([0x99]), 0, 1, l.dataOffset(l.map.num(2)) + 4000);
    fs.closeSync(fd);
    for (const [offset, length] of [[2 * BS, BS], [2 * BS + 10, 10], [BS - 10, 2 * BS + 20], [0, 4 * BS]]) {
      const err = await view.read(offset!, length!, true).catch((e: unknown) => e);
      expect(err, `${offset}+${length}`).toMatchObject({ code: 'CHECKSUM_MISMATCH', block: 2, offset: l.dataOffset(l.map.num(2)) });
    }
    // Reads not touching it, and unverified reads, go on.
    expect((await view.read(0, 2 * BS, true)).equals(Buffer.concat(blocks(2, 0x20)))).toBe(true);
    expect((await view.read(3 * BS + 5, 5, true)).equals(Buffer.alloc(5, 0x23))).toBe(true);
    expect((await view.read(2 * BS + 4000, 1))[0]).toBe(0x99);
    // Whole-block reads for copies always verify.
    await expect(view.readBlock(2, Buffer.alloc(BS))).rejects.toMatchObject({ code: 'CHECKSUM_MISMATCH' });
  });

  it('extents of one file a small gap apart are one readv; other files read together', async () => {
    const l1 = await layer(1);
    const l2 = await layer(2);
    await l1.append([{ kind: RecordKind.DATA, block: 0, data: blocks(4, 0x30) }]);
    await l2.append([{ kind: RecordKind.DATA, block: 2, data: blocks(1, 0x90) }]);
    const view = ChainView.build(zeroBase, [l1, l2], SIZE, BS, { indexHashes: false });
    const { result, reads } = await preads(() => view.read(0, 4 * BS));
    // l1's blocks 0-1 and 3 lie one block apart in l1: one readv bridges the gap.
    expect(reads.sort()).toEqual(['l1.delta', 'l2.delta']);
    const expected = Buffer.concat([...blocks(2, 0x30), Buffer.alloc(BS, 0x90), Buffer.alloc(BS, 0x33)]);
    expect(result.equals(expected)).toBe(true);
  });

  it('a block overwritten later in the same layer reads the newer copy', async () => {
    const l = await layer(1);
    await l.append([{ kind: RecordKind.DATA, block: 0, data: blocks(3, 0x40) }]);
    await l.append([{ kind: RecordKind.DATA, block: 1, data: [Buffer.alloc(BS, 0xaa)] }]);
    const view = ChainView.build(zeroBase, [l], SIZE, BS, { indexHashes: false });
    const data = await view.read(0, 3 * BS);
    expect([data[0], data[BS], data[2 * BS]]).toEqual([0x40, 0xaa, 0x42]);
  });

  it('base blocks are read in one pread; zero and base-less blocks cost nothing', async () => {
    const base = await rawBase(randomBytes(SIZE));
    const baseBytes = fs.readFileSync(path.join(dir, 'base.raw'));
    const l = await layer(1);
    await l.append([{ kind: RecordKind.ZERO, block: 10, count: 2 }]);
    const view = ChainView.build(base, [l], SIZE, BS, { indexHashes: false });
    const { result, reads } = await preads(() => view.read(2 * BS, 8 * BS));
    expect(reads).toEqual(['base.raw']);
    expect(result.equals(baseBytes.subarray(2 * BS, 10 * BS))).toBe(true);
    const zeros = await preads(() => view.read(10 * BS + 5, 2 * BS - 5));
    expect(zeros.reads).toEqual([]);
    expect(zeros.result.every((b) => b === 0)).toBe(true);
  });

  it('zero blocks never leak stale memory (the output buffer is not pre-zeroed)', async () => {
    const l = await layer(1);
    await l.append([{ kind: RecordKind.ZERO, block: 0, count: BLOCKS }]);
    const view = ChainView.build(zeroBase, [l], SIZE, BS, { indexHashes: false });
    for (let i = 0; i < 20; i++) {
      Buffer.allocUnsafe(SIZE).fill(0xcc); // dirty the pool
      const out = await view.read(0, SIZE);
      expect(out.every((b) => b === 0)).toBe(true);
    }
    const out = Buffer.alloc(2 * BS, 0xee);
    await view.readInto(out, 0);
    expect(out.every((b) => b === 0)).toBe(true);
  });

  it('a zero record above data hides it; data above zero shows', async () => {
    const l1 = await layer(1);
    const l2 = await layer(2);
    await l1.append([{ kind: RecordKind.DATA, block: 0, data: blocks(2, 0x50) }, { kind: RecordKind.ZERO, block: 2, count: 1 }]);
    await l2.append([{ kind: RecordKind.ZERO, block: 0, count: 1 }, { kind: RecordKind.DATA, block: 2, data: blocks(1, 0x60) }]);
    const view = ChainView.build(zeroBase, [l1, l2], SIZE, BS, { indexHashes: false });
    const data = await view.read(0, 3 * BS);
    expect([data[0], data[BS], data[2 * BS]]).toEqual([0, 0x51, 0x60]);
    expect(view.isZero(0)).toBe(true);
    expect(view.isZero(1)).toBe(false);
    expect(view.source(0)).toEqual({ kind: 'zero', depth: 0 });
    expect(view.source(1)).toMatchObject({ kind: 'data', depth: 1, layer: l1.id });
    expect(view.source(5)).toEqual({ kind: 'base' });
  });

  it('a base shorter than the disk reads zeros beyond its end, and those blocks count as zero', async () => {
    const base = await rawBase(Buffer.alloc(BS + 100, 0x7f));
    const view = ChainView.build(base, [], SIZE, BS, { indexHashes: false });
    const data = await view.read(0, 3 * BS);
    expect(data.subarray(0, BS + 100).every((b) => b === 0x7f)).toBe(true);
    expect(data.subarray(BS + 100).every((b) => b === 0)).toBe(true);
    expect([view.isZero(0), view.isZero(1), view.isZero(2)]).toEqual([false, false, true]);
  });

  it('a reference reads the stored copy it names, in a lower layer or its own', async () => {
    const l1 = await layer(1);
    const l2 = await layer(2);
    const content = Buffer.alloc(BS, 0x5e);
    await l1.append([{ kind: RecordKind.DATA, block: 0, data: [content], hashes: [sha256(content)] }]);
    const blob = Buffer.alloc(BS, 0xb1);
    await l2.append([
      { kind: RecordKind.REF, block: 5, hashes: [sha256(content)] },
      { kind: RecordKind.BLOB, data: [blob], hashes: [sha256(blob)] },
      { kind: RecordKind.REF, block: 6, hashes: [sha256(blob)] },
    ]);
    for (const indexHashes of [false, true]) {
      const view = ChainView.build(zeroBase, [l1, l2], SIZE, BS, { indexHashes });
      const data = await view.read(5 * BS, 2 * BS);
      expect(data.subarray(0, BS).equals(content)).toBe(true);
      expect(data.subarray(BS).equals(blob)).toBe(true);
      expect(view.source(5)).toMatchObject({ kind: 'data', layer: l1.id });
      // A BLOB is content, not a block: block 0 of the upper layer is not mapped by it.
      expect(view.source(0)).toMatchObject({ layer: l1.id });
    }
  });

  it('a reference to content stored nowhere on the path is CHAIN_CORRUPT when the view is built', async () => {
    const l = await layer(1);
    await l.append([{ kind: RecordKind.REF, block: 3, hashes: [randomBytes(32)] }]);
    try {
      ChainView.build(zeroBase, [l], SIZE, BS, { indexHashes: false });
      expect.unreachable();
    } catch (err) {
      expect(isDeltaDiskError(err, 'CHAIN_CORRUPT')).toBe(true);
      expect(isDeltaDiskError(err) && [err.block, err.layer]).toEqual([3, l.id]);
    }
  });

  it('readBlock of a partial last block pads it with zeros', async () => {
    const size = 2 * BS + 100;
    const base = await rawBase(Buffer.alloc(size, 0x11));
    const view = ChainView.build(base, [], size, BS, { indexHashes: false });
    const out = Buffer.alloc(BS, 0xff);
    await view.readBlock(2, out);
    expect(out.subarray(0, 100).every((b) => b === 0x11)).toBe(true);
    expect(out.subarray(100).every((b) => b === 0)).toBe(true);
    expect(view.blockCount).toBe(3);
  });
});

describe('ChainView.assertRange', () => {
  const view = () => ChainView.build(zeroBase, [], SIZE, BS, { indexHashes: false });
  const code = (offset: number, length: number): string => {
    try {
      view().assertRange(offset, length);
      return 'ok';
    } catch (err) {
      return isDeltaDiskError(err) ? err.code : 'other';
    }
  };

  it('accepts every range inside the disk, including empty ones at the end', () => {
    expect(code(0, SIZE)).toBe('ok');
    expect(code(SIZE, 0)).toBe('ok');
    expect(code(SIZE - 1, 1)).toBe('ok');
  });

  it('negative, fractional, NaN, infinite or unsafe numbers are INVALID_ARGUMENT', () => {
    for (const [o, l] of [[-1, 1], [0, -1], [0.5, 1], [0, 1.5], [Number.NaN, 1], [0, Number.POSITIVE_INFINITY], [2 ** 53, 0]]) {
      expect(code(o!, l!), `${o} ${l}`).toBe('INVALID_ARGUMENT');
    }
  });

  it('a range past the end is OUT_OF_RANGE', () => {
    expect(code(SIZE, 1)).toBe('OUT_OF_RANGE');
    expect(code(SIZE + 1, 0)).toBe('OUT_OF_RANGE');
    expect(code(1, SIZE)).toBe('OUT_OF_RANGE');
    expect(code(Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER)).toBe('OUT_OF_RANGE');
  });

  it('a request over 256 MiB is LIMIT_EXCEEDED, even inside a larger disk', () => {
    const big = ChainView.build(zeroBase, [], 2 ** 40, 65536, { indexHashes: false });
    expect(() => big.assertRange(0, MAX_IO_LENGTH + 1)).toThrow(expect.objectContaining({ code: 'LIMIT_EXCEEDED' }));
    expect(() => big.assertRange(0, MAX_IO_LENGTH)).not.toThrow();
  });
});
