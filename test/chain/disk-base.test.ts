/**
 * Disks on a raw base image: the base is never modified (hashed before and after a
 * full workload), a missing or modified base is refused with its documented code,
 * a base outside the disk's directory needs the user's permission, and a size that
 * is not a multiple of the block size works to the last byte.
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { exportRawFile } from '../../lib/chain/export-raw.js';
import { Disk } from '../../lib/index.js';
import { codeOf, pattern, sha256File } from '../helpers/disk.js';
import { tempDir } from '../helpers/temp-dir.js';

const BS = 4096;

let root: string;
let cleanup: () => void;
let dir: string;
let file: string;
const disks: Disk[] = [];

beforeEach(() => {
  ({ dir: root, cleanup } = tempDir('deltadisk-base-'));
  dir = path.join(root, 'vm');
  fs.mkdirSync(dir);
  file = path.join(dir, 'disk.chain');
});
afterEach(async () => {
  for (const d of disks.splice(0)) await d.close().catch(() => undefined);
  cleanup();
});

function writeBase(p: string, data: Buffer): Buffer {
  fs.mkdirSync(path.dirname(p), { recursive: true });
  fs.writeFileSync(p, data);
  return data;
}

async function track(d: Promise<Disk>): Promise<Disk> {
  const disk = await d;
  disks.push(disk);
  return disk;
}

describe('a disk on a raw base', () => {
  it('reads the base where nothing was written, and never modifies it', async () => {
    const basePath = path.join(dir, 'base.raw');
    const base = writeBase(basePath, randomBytes(40 * BS));
    const hash = sha256File(basePath);
    const stat = fs.statSync(basePath);
    const d = await track(Disk.create(file, { base: basePath, blockSize: BS }));
    expect(d.virtualSize).toBe(base.length);
    expect((await d.read(0, base.length)).equals(base)).toBe(true);

    const expected = Buffer.from(base);
    const apply = async (off: number, data: Buffer | null, len = data?.length ?? 0): Promise<void> => {
      if (data === null) {
        await d.writeZeroes(off, len);
        expected.fill(0, off, off + len);
      } else {
        await d.write(off, data);
        data.copy(expected, off);
      }
    };
    await apply(5, pattern(3 * BS, 1));
    await apply(10 * BS + 7, null, 2 * BS);
    await d.discard(20 * BS, BS);
    expected.fill(0, 20 * BS, 21 * BS);
    await d.flush();
    await d.snapshot('one');
    const atOne = Buffer.from(expected);
    await apply(30 * BS - 1, pattern(BS + 2, 2));
    await d.revert('one', { keepCurrentAs: 'two' });
    await d.deleteSnapshot('one');
    await d.consolidate();
    const r = await d.openSnapshot('two');
    expect((await r.read(0, base.length)).equals(expected)).toBe(true);
    await r.close();
    // The revert went back to "one", so the current state lacks the last write.
    expect((await d.read(0, base.length)).equals(atOne)).toBe(true);
    await d.close();
    const again = await track(Disk.open(file));
    expect((await again.read(0, base.length)).equals(atOne)).toBe(true);
    await again.close();

    expect(sha256File(basePath)).toBe(hash);
    expect(fs.statSync(basePath).mtimeMs).toBe(stat.mtimeMs);
  });

  it('records a base inside the directory by a relative name, so the directory can move', async () => {
    writeBase(path.join(dir, 'images', 'base.raw'), pattern(8 * BS, 3));
    const d = await Disk.create(file, { base: path.join(dir, 'images', 'base.raw'), blockSize: BS });
    expect(d.descriptor.base?.file).toBe(path.join('images', 'base.raw'));
    await d.write(0, Buffer.from('moved'));
    await d.close();
    const moved = path.join(root, 'moved');
    fs.renameSync(dir, moved);
    const again = await track(Disk.open(path.join(moved, 'disk.chain')));
    expect((await again.read(0, 5)).toString()).toBe('moved');
    expect((await again.read(BS, BS)).equals(pattern(8 * BS, 3).subarray(BS, 2 * BS))).toBe(true);
  });

  it('a size that differs from the base is INVALID_ARGUMENT; the same size is fine', async () => {
    const basePath = path.join(dir, 'base.raw');
    writeBase(basePath, pattern(8 * BS, 1));
    expect(await codeOf(Disk.create(file, { base: basePath, size: 8 * BS + 1 }))).toBe('INVALID_ARGUMENT');
    expect(fs.readdirSync(dir)).toEqual(['base.raw']);
    await track(Disk.create(file, { base: basePath, size: 8 * BS }));
  });

  it('an empty base is INVALID_ARGUMENT', async () => {
    writeBase(path.join(dir, 'base.raw'), Buffer.alloc(0));
    expect(await codeOf(Disk.create(file, { base: path.join(dir, 'base.raw') }))).toBe('INVALID_ARGUMENT');
    expect(fs.readdirSync(dir)).toEqual(['base.raw']);
  });

  it('a base that is not a regular file is UNSAFE_PATH', async () => {
    fs.mkdirSync(path.join(dir, 'adir'));
    expect(await codeOf(Disk.create(file, { base: path.join(dir, 'adir') }))).toBe('UNSAFE_PATH');
    expect(await codeOf(Disk.create(file, { base: '/dev/zero' }))).toBe('UNSAFE_PATH');
    expect(fs.readdirSync(dir)).toEqual(['adir']);
  });
});

describe('a missing base', () => {
  it('at create is NOT_FOUND, leaving nothing behind', async () => {
    expect(await codeOf(Disk.create(file, { base: path.join(dir, 'nope.raw') }))).toBe('NOT_FOUND');
    expect(await codeOf(Disk.create(file, { base: path.join(root, 'no-dir', 'nope.raw') }))).toBe('NOT_FOUND');
    expect(fs.readdirSync(dir)).toEqual([]);
  });

  it('at open is NOT_FOUND, read-only or not, and releases the lock', async () => {
    const basePath = path.join(dir, 'base.raw');
    writeBase(basePath, pattern(4 * BS, 1));
    await (await Disk.create(file, { base: basePath, blockSize: BS })).close();
    fs.rmSync(basePath);
    expect(await codeOf(Disk.open(file))).toBe('NOT_FOUND');
    expect(await codeOf(Disk.open(file, { readOnly: true }))).toBe('NOT_FOUND');
    expect(await codeOf(Disk.open(file))).toBe('NOT_FOUND');
  });
});

describe('a modified base', () => {
  async function disk(size: number): Promise<string> {
    const basePath = path.join(dir, 'base.raw');
    writeBase(basePath, randomBytes(size));
    await (await Disk.create(file, { base: basePath, blockSize: BS })).close();
    return basePath;
  }

  it('one changed byte of a small base is BASE_MODIFIED', async () => {
    const basePath = await disk(64 * BS);
    const fd = fs.openSync(basePath, 'r+');
    const b = Buffer.alloc(1);
    fs.readSync(fd, b, 0, 1, 12345);
    fs.writeSync(fd, Buffer.from([b[0]! ^ 1]), 0, 1, 12345);
    fs.closeSync(fd);
    expect(await codeOf(Disk.open(file))).toBe('BASE_MODIFIED');
    expect(await codeOf(Disk.open(file, { readOnly: true }))).toBe('BASE_MODIFIED');
  });

  it('a changed byte in a sampled range of a large base is BASE_MODIFIED', async () => {
    const basePath = await disk(4 * 1024 * 1024);
    const fd = fs.openSync(basePath, 'r+');
    fs.writeSync(fd, Buffer.from('tampered'), 0, 8, 0);
    fs.closeSync(fd);
    expect(await codeOf(Disk.open(file))).toBe('BASE_MODIFIED');
  });

  it('a base that grew or shrank is BASE_MODIFIED', async () => {
    const basePath = await disk(16 * BS);
    fs.appendFileSync(basePath, Buffer.alloc(BS));
    expect(await codeOf(Disk.open(file))).toBe('BASE_MODIFIED');
    fs.truncateSync(basePath, 8 * BS);
    expect(await codeOf(Disk.open(file))).toBe('BASE_MODIFIED');
  });

  it('a base replaced by another file of the same size is BASE_MODIFIED', async () => {
    const basePath = await disk(16 * BS);
    fs.writeFileSync(basePath, randomBytes(16 * BS));
    expect(await codeOf(Disk.open(file))).toBe('BASE_MODIFIED');
  });
});

describe('a base outside the disk\'s directory', () => {
  it('is trusted at create (the user named it), but later opens need allowPaths', async () => {
    const basePath = path.join(root, 'images', 'base.raw');
    const base = writeBase(basePath, pattern(8 * BS, 7));
    const d = await Disk.create(file, { base: basePath, blockSize: BS });
    expect(d.descriptor.base?.file).toBe(basePath);
    await d.close();
    expect(await codeOf(Disk.open(file))).toBe('UNSAFE_PATH');
    expect(await codeOf(Disk.open(file, { readOnly: true }))).toBe('UNSAFE_PATH');
    expect(await codeOf(Disk.open(file, { allowPaths: [path.join(root, 'other')] }))).toBe('UNSAFE_PATH');
    for (const allow of [basePath, path.dirname(basePath), root]) {
      const ok = await Disk.open(file, { allowPaths: [allow] });
      expect((await ok.read(0, 8 * BS)).equals(base)).toBe(true);
      await ok.close();
    }
  });

  it('the refusal does not depend on whether the base still exists', async () => {
    const basePath = path.join(root, 'images', 'base.raw');
    writeBase(basePath, pattern(8 * BS, 7));
    await (await Disk.create(file, { base: basePath, blockSize: BS })).close();
    const refusal = () =>
      Disk.open(file).then(
        () => ({ code: 'opened', message: '' }),
        (e: { code: string; message: string }) => ({ code: e.code, message: e.message }),
      );
    const present = await refusal();
    fs.rmSync(basePath);
    const absent = await refusal();
    expect(present.code).toBe('UNSAFE_PATH');
    expect(absent).toEqual(present);
  });

  it('a base reached through a symlink that leads outside needs allowPaths as well', async () => {
    const real = path.join(root, 'images', 'base.raw');
    writeBase(real, pattern(8 * BS, 1));
    fs.symlinkSync(real, path.join(dir, 'base.raw'));
    const d = await Disk.create(file, { base: path.join(dir, 'base.raw'), blockSize: BS });
    await d.close();
    const err = await codeOf(Disk.open(file));
    const ok = await Disk.open(file, { allowPaths: [path.dirname(real)] });
    await ok.close();
    expect(err).toBe('UNSAFE_PATH');
  });
});

describe('a virtual size that is not a multiple of the block size', () => {
  const SIZE = 5 * BS + 1234;

  it('serves, zeroes and keeps the partial last block exactly, on a sparse base', async () => {
    const d = await track(Disk.create(file, { size: SIZE, blockSize: BS }));
    await d.write(SIZE - 10, Buffer.from('0123456789'));
    expect((await d.read(SIZE - 10, 10)).toString()).toBe('0123456789');
    expect(await codeOf(d.write(SIZE - 9, Buffer.from('0123456789')))).toBe('OUT_OF_RANGE');
    await d.write(5 * BS, pattern(1234, 1));
    await d.writeZeroes(SIZE - 4, 4);
    const expected = Buffer.alloc(SIZE);
    pattern(1234, 1).copy(expected, 5 * BS);
    expected.fill(0, SIZE - 4);
    expect((await d.read(0, SIZE)).equals(expected)).toBe(true);
    await d.snapshot('s');
    await d.writeZeroes(5 * BS, 1234); // the whole partial block
    expect((await d.read(5 * BS, 1234)).every((b) => b === 0)).toBe(true);
    await d.close();
    const again = await track(Disk.open(file));
    expect((await again.read(5 * BS, 1234)).every((b) => b === 0)).toBe(true);
    const r = await again.openSnapshot('s');
    expect((await r.read(0, SIZE)).equals(expected)).toBe(true);
    await r.close();
    const out = path.join(root, 'export.raw');
    await exportRawFile(await again.openSnapshot('s'), out);
    expect(fs.readFileSync(out).equals(expected)).toBe(true);
    const extents = again.extents();
    expect(extents.at(-1)!.start + extents.at(-1)!.length).toBe(SIZE);
    expect(extents.reduce((n, e) => n + e.length, 0)).toBe(SIZE);
  });

  it('on a raw base of that size, keeps base bytes of the partial block around a write', async () => {
    const basePath = path.join(dir, 'base.raw');
    const base = writeBase(basePath, randomBytes(SIZE));
    const d = await track(Disk.create(file, { base: basePath, blockSize: BS }));
    await d.write(SIZE - 100, Buffer.alloc(50, 0xab));
    const expected = Buffer.from(base);
    expected.fill(0xab, SIZE - 100, SIZE - 50);
    expect((await d.read(0, SIZE)).equals(expected)).toBe(true);
    await d.close();
    expect((await (await track(Disk.open(file))).read(0, SIZE)).equals(expected)).toBe(true);
  });

  it('isZeroRange answers from the map alone, and never says zeros where a read finds data', async () => {
    const basePath = path.join(dir, 'base.raw');
    const base = Buffer.alloc(8 * BS);
    base.fill(0x5a, 0, 2 * BS + 100); // data in blocks 0–2; the base's zeros are not known without reading
    writeBase(basePath, base);
    const onBase = await track(Disk.create(file, { base: basePath, blockSize: BS }));
    const plain = await track(Disk.create(path.join(dir, 'plain.chain'), { size: 8 * BS, blockSize: BS }));
    for (const d of [onBase, plain]) {
      await d.write(4 * BS + 10, Buffer.from([1])); // data in block 4
      await d.writeZeroes(1 * BS, BS); // a zero marker (over base data)
    }
    const zerosOf = (d: Disk): boolean[] => Array.from({ length: 8 }, (_, b) => d.currentReader().isZeroRange(b * BS, BS));
    expect(zerosOf(onBase)).toEqual([false, true, false, false, false, false, false, false]);
    // Without a base, a block no layer stores reads as zeros.
    expect(zerosOf(plain)).toEqual([true, true, true, true, false, true, true, true]);
    for (const d of [onBase, plain]) {
      const r = d.currentReader();
      for (let a = 0; a < 8; a++) {
        for (let b = a + 1; b <= 8; b++) {
          if (r.isZeroRange(a * BS, (b - a) * BS)) expect((await d.read(a * BS, (b - a) * BS)).every((x) => x === 0)).toBe(true);
        }
      }
    }
    expect(plain.currentReader().isZeroRange(5 * BS, 3 * BS)).toBe(true);
    expect(plain.currentReader().isZeroRange(3 * BS + 1, 2 * BS)).toBe(false);
    expect(() => plain.currentReader().isZeroRange(7 * BS, 2 * BS)).toThrow(/past/);
  });

  it('a disk smaller than one block works', async () => {
    const d = await track(Disk.create(file, { size: 100, blockSize: BS }));
    await d.write(99, Buffer.from([7]));
    await d.snapshot('a');
    await d.write(0, Buffer.from([8]));
    await d.revert('a');
    expect([...(await d.read(0, 100))].filter((b) => b !== 0)).toEqual([7]);
    expect(d.extents()).toHaveLength(1);
  });
});
