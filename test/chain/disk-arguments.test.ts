/**
 * Disk API argument and state validation: every bad argument is a typed error that
 * changes nothing and does not break the disk; read-only disks refuse changes;
 * closing is idempotent and everything after it is NOT_OPEN; one writer at a time.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Disk } from '../../lib/index.js';
import { codeOf, dirState, pattern } from '../helpers/disk.js';
import { tempDir } from '../helpers/temp-dir.js';

const BS = 4096;
const SIZE = 64 * BS;

let dir: string;
let cleanup: () => void;
let file: string;
const disks: Disk[] = [];

beforeEach(() => {
  ({ dir, cleanup } = tempDir('deltadisk-args-'));
  file = path.join(dir, 'disk.chain');
});
afterEach(async () => {
  for (const d of disks.splice(0)) await d.close().catch(() => undefined);
  cleanup();
});

async function create(options: Parameters<typeof Disk.create>[1] = { size: SIZE, blockSize: BS }): Promise<Disk> {
  const d = await Disk.create(file, options);
  disks.push(d);
  return d;
}

async function open(readOnly = false): Promise<Disk> {
  const d = await Disk.open(file, { readOnly });
  disks.push(d);
  return d;
}

describe('Disk.create arguments', () => {
  it('refuses bad block sizes with INVALID_ARGUMENT and leaves nothing behind', async () => {
    for (const blockSize of [0, 512, 2048, 3000, 4097, 12288, 2 * 1024 * 1024, -4096, 4096.5, Number.NaN, '4096' as unknown as number]) {
      expect(await codeOf(Disk.create(file, { size: SIZE, blockSize })), String(blockSize)).toBe('INVALID_ARGUMENT');
      expect(fs.readdirSync(dir)).toEqual([]);
    }
  });

  it('accepts every power of two from 4 KiB to 1 MiB', async () => {
    for (let e = 12; e <= 20; e++) {
      const f = path.join(dir, `d${e}.chain`);
      const d = await Disk.create(f, { size: 3 * 2 ** e + 1, blockSize: 2 ** e });
      expect(d.blockSize).toBe(2 ** e);
      await d.write(2 ** e - 1, Buffer.from([1, 2]));
      expect([...(await d.read(2 ** e - 1, 2))]).toEqual([1, 2]);
      await d.close();
    }
  });

  it('refuses bad sizes with INVALID_ARGUMENT and leaves nothing behind', async () => {
    for (const size of [0, -1, 1.5, Number.NaN, Number.POSITIVE_INFINITY, 2 ** 50 + 1, 2 ** 53, '65536' as unknown as number]) {
      expect(await codeOf(Disk.create(file, { size, blockSize: BS })), String(size)).toBe('INVALID_ARGUMENT');
      expect(fs.readdirSync(dir)).toEqual([]);
    }
  });

  it('needs a size or a base', async () => {
    expect(await codeOf(Disk.create(file, {}))).toBe('INVALID_ARGUMENT');
    expect(fs.readdirSync(dir)).toEqual([]);
  });

  it('accepts the largest size, 1 PiB, and serves its last byte', async () => {
    const d = await create({ size: 2 ** 50 });
    await d.write(2 ** 50 - 1, Buffer.from([0x42]));
    expect([...(await d.read(2 ** 50 - 2, 2))]).toEqual([0, 0x42]);
    await d.close();
    const again = await open();
    expect([...(await again.read(2 ** 50 - 1, 1))]).toEqual([0x42]);
  });

  it('a missing directory is NOT_FOUND', async () => {
    expect(await codeOf(Disk.create(path.join(dir, 'nope', 'disk.chain'), { size: SIZE }))).toBe('NOT_FOUND');
  });

  it('an existing descriptor is ALREADY_EXISTS and is left alone', async () => {
    const d = await create();
    await d.write(0, pattern(BS, 1));
    await d.close();
    const before = dirState(dir);
    expect(await codeOf(Disk.create(file, { size: SIZE, blockSize: BS }))).toBe('ALREADY_EXISTS');
    expect(dirState(dir)).toEqual(before);
  });

  it('a dangling symlink where the descriptor should go is ALREADY_EXISTS, and its target is not created', async () => {
    fs.symlinkSync(path.join(dir, 'victim'), file);
    expect(await codeOf(Disk.create(file, { size: SIZE }))).toBe('ALREADY_EXISTS');
    expect(fs.existsSync(path.join(dir, 'victim'))).toBe(false);
  });
});

describe('Disk I/O arguments', () => {
  const badNumbers = [-1, 0.5, Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, 2 ** 53, '0', null, undefined, 10n];

  it('read, writeZeroes and discard refuse bad offsets and lengths with INVALID_ARGUMENT', async () => {
    const d = await create();
    for (const bad of badNumbers) {
      const n = bad as unknown as number;
      expect(await codeOf(d.read(n, 1)), `read offset ${String(bad)}`).toBe('INVALID_ARGUMENT');
      expect(await codeOf(d.read(0, n)), `read length ${String(bad)}`).toBe('INVALID_ARGUMENT');
      expect(await codeOf(d.writeZeroes(n, 1)), `zero offset ${String(bad)}`).toBe('INVALID_ARGUMENT');
      expect(await codeOf(d.discard(0, n)), `discard length ${String(bad)}`).toBe('INVALID_ARGUMENT');
      expect(await codeOf(d.write(n, Buffer.alloc(1))), `write offset ${String(bad)}`).toBe('INVALID_ARGUMENT');
    }
  });

  it('write refuses data that is not a Uint8Array', async () => {
    const d = await create();
    for (const data of ['text', [1, 2, 3], null, undefined, 42, new ArrayBuffer(8), new DataView(new ArrayBuffer(8)), new Uint16Array(4), { length: 4 }]) {
      expect(await codeOf(d.write(0, data as unknown as Uint8Array)), Object.prototype.toString.call(data)).toBe('INVALID_ARGUMENT');
    }
  });

  it('ranges past the end are OUT_OF_RANGE, for every operation', async () => {
    const d = await create();
    expect(await codeOf(d.read(SIZE, 1))).toBe('OUT_OF_RANGE');
    expect(await codeOf(d.read(SIZE - 1, 2))).toBe('OUT_OF_RANGE');
    expect(await codeOf(d.read(SIZE + 1, 0))).toBe('OUT_OF_RANGE');
    expect(await codeOf(d.write(SIZE - 1, Buffer.alloc(2)))).toBe('OUT_OF_RANGE');
    expect(await codeOf(d.write(Number.MAX_SAFE_INTEGER, Buffer.alloc(1)))).toBe('OUT_OF_RANGE');
    expect(await codeOf(d.writeZeroes(0, SIZE + 1))).toBe('OUT_OF_RANGE');
    expect(await codeOf(d.discard(SIZE, 1))).toBe('OUT_OF_RANGE');
  });

  it('a single request over 256 MiB is LIMIT_EXCEEDED', async () => {
    const d = await create({ size: 2 ** 30 });
    expect(await codeOf(d.read(0, 256 * 2 ** 20 + 1))).toBe('LIMIT_EXCEEDED');
    expect(await codeOf(d.writeZeroes(0, 256 * 2 ** 20 + 1))).toBe('LIMIT_EXCEEDED');
  });

  it('empty requests anywhere up to the end succeed and change nothing', async () => {
    const d = await create();
    await d.flush();
    const before = dirState(dir);
    expect((await d.read(SIZE, 0)).length).toBe(0);
    await d.write(SIZE, Buffer.alloc(0));
    await d.writeZeroes(0, 0);
    await d.discard(17, 0);
    await d.flush();
    expect(dirState(dir)).toEqual(before);
  });

  it('after refused arguments the disk is not broken and nothing was written', async () => {
    const d = await create();
    await d.write(0, pattern(2 * BS, 3));
    await d.flush();
    await codeOf(d.write(-1, Buffer.alloc(1)));
    await codeOf(d.write(SIZE, Buffer.alloc(1)));
    await codeOf(d.write(0, 'x' as unknown as Uint8Array));
    await codeOf(d.writeZeroes(0, SIZE * 2));
    expect((await d.read(0, 2 * BS)).equals(pattern(2 * BS, 3))).toBe(true);
    await d.write(BS, Buffer.from('still works'));
    await d.flush();
    expect((await d.read(BS, 11)).toString()).toBe('still works');
  });

  it('writes from a view into a larger buffer use exactly the viewed bytes', async () => {
    const d = await create();
    const big = pattern(5 * BS, 9);
    const view = big.subarray(BS + 3, 3 * BS + 3);
    await d.write(BS, view);
    const u8 = new Uint8Array(big.buffer, big.byteOffset + 11, BS);
    await d.write(5 * BS, u8);
    expect((await d.read(BS, 2 * BS)).equals(view)).toBe(true);
    expect(Buffer.from(await d.read(5 * BS, BS)).equals(Buffer.from(u8))).toBe(true);
  });

  it('unaligned writes keep the bytes around them', async () => {
    const d = await create();
    await d.write(0, pattern(4 * BS, 5));
    await d.write(BS - 3, Buffer.from('abcdefgh'));
    await d.writeZeroes(3 * BS - 2, 5);
    const expected = pattern(4 * BS, 5);
    expected.write('abcdefgh', BS - 3);
    expected.fill(0, 3 * BS - 2, 3 * BS + 3);
    expect((await d.read(0, 4 * BS)).equals(expected)).toBe(true);
    await d.close();
    expect((await (await open(true)).read(0, 4 * BS)).equals(expected)).toBe(true);
  });
});

describe('read-only disks', () => {
  it('refuse every change with READ_ONLY', async () => {
    const d = await create();
    await d.write(0, pattern(BS, 1));
    await d.snapshot('s');
    await d.close();
    const ro = await open(true);
    expect(ro.readOnly).toBe(true);
    expect(await codeOf(ro.write(0, Buffer.alloc(1)))).toBe('READ_ONLY');
    expect(await codeOf(ro.writeZeroes(0, 1))).toBe('READ_ONLY');
    expect(await codeOf(ro.discard(0, 1))).toBe('READ_ONLY');
    expect(await codeOf(ro.flush())).toBe('READ_ONLY');
    expect(await codeOf(ro.snapshot('t'))).toBe('READ_ONLY');
    expect(await codeOf(ro.revert('s'))).toBe('READ_ONLY');
    expect(await codeOf(ro.deleteSnapshot('s'))).toBe('READ_ONLY');
    expect(await codeOf(ro.consolidate())).toBe('READ_ONLY');
    // Reading is fine.
    expect((await ro.read(0, BS)).equals(pattern(BS, 1))).toBe(true);
    const r = await ro.openSnapshot('s');
    expect((await r.read(0, BS)).equals(pattern(BS, 1))).toBe(true);
    await r.close();
  });

  it('change no file, take no lock, and can be opened while a writer holds the disk', async () => {
    const d = await create();
    await d.write(0, pattern(BS, 1));
    await d.flush();
    const before = dirState(dir);
    const ro1 = await open(true);
    const ro2 = await open(true);
    await ro1.info();
    ro1.extents();
    await ro1.close();
    await ro2.close();
    expect(dirState(dir)).toEqual(before);
  });

  it('see the writer\'s flushed data as of their opening', async () => {
    const d = await create();
    await d.write(0, pattern(BS, 1));
    await d.flush();
    const ro = await open(true);
    expect((await ro.read(0, BS)).equals(pattern(BS, 1))).toBe(true);
  });
});

describe('closing', () => {
  it('close is idempotent, also when called concurrently', async () => {
    const d = await create();
    await d.write(0, pattern(BS, 1));
    await Promise.all([d.close(), d.close(), d.close()]);
    await d.close();
    expect(d.closed).toBe(true);
    const again = await open();
    expect((await again.read(0, BS)).equals(pattern(BS, 1))).toBe(true);
  });

  it('everything after close is NOT_OPEN', async () => {
    const d = await create();
    await d.snapshot('s');
    await d.close();
    expect(await codeOf(d.read(0, 1))).toBe('NOT_OPEN');
    expect(await codeOf(d.write(0, Buffer.alloc(1)))).toBe('NOT_OPEN');
    expect(await codeOf(d.writeZeroes(0, 1))).toBe('NOT_OPEN');
    expect(await codeOf(d.discard(0, 1))).toBe('NOT_OPEN');
    expect(await codeOf(d.flush())).toBe('NOT_OPEN');
    expect(await codeOf(d.snapshot('t'))).toBe('NOT_OPEN');
    expect(await codeOf(d.revert('s'))).toBe('NOT_OPEN');
    expect(await codeOf(d.deleteSnapshot('s'))).toBe('NOT_OPEN');
    expect(await codeOf(d.consolidate())).toBe('NOT_OPEN');
    expect(await codeOf(d.openSnapshot('s'))).toBe('NOT_OPEN');
    expect(await codeOf(d.changedBlocks('s'))).toBe('NOT_OPEN');
    expect(await codeOf(d.info())).toBe('NOT_OPEN');
    expect(await codeOf(() => d.snapshots())).toBe('NOT_OPEN');
    expect(await codeOf(() => d.extents())).toBe('NOT_OPEN');
    expect(await codeOf(() => d.currentReader())).toBe('NOT_OPEN');
  });

  it('a reader of the current state taken before close is NOT_OPEN after it', async () => {
    const d = await create();
    await d.write(0, pattern(BS, 1));
    const r = d.currentReader();
    expect((await r.read(0, BS)).equals(pattern(BS, 1))).toBe(true);
    await d.close();
    // Files opened meanwhile may get the closed descriptors' numbers; the reader must not read them.
    fs.writeFileSync(path.join(dir, 'other'), Buffer.alloc(BS, 0x55));
    const fds = Array.from({ length: 8 }, () => fs.openSync(path.join(dir, 'other'), 'r'));
    try {
      expect(await codeOf(r.read(0, BS))).toBe('NOT_OPEN');
    } finally {
      for (const fd of fds) fs.closeSync(fd);
    }
  });

  it('a snapshot reader outlives the disk it came from', async () => {
    const d = await create();
    await d.write(0, pattern(BS, 1));
    await d.snapshot('s');
    await d.write(0, pattern(BS, 2));
    const r = await d.openSnapshot('s');
    await d.close();
    expect((await r.read(0, BS)).equals(pattern(BS, 1))).toBe(true);
    await r.close();
    expect(await codeOf(r.read(0, 1))).toBe('NOT_OPEN');
    await r.close();
  });

  it('close flushes: unflushed writes are there after reopening', async () => {
    const d = await create();
    await d.write(100, pattern(3 * BS, 4));
    await d.close();
    expect((await (await open(true)).read(100, 3 * BS)).equals(pattern(3 * BS, 4))).toBe(true);
  });
});

describe('one writer at a time', () => {
  it('a second writable open in the same process is LOCKED and names the holder', async () => {
    await create();
    const err = await Disk.open(file).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'LOCKED', holder: { pid: process.pid } });
  });

  it('after close the disk can be opened for writing again', async () => {
    const d = await create();
    await d.close();
    const again = await open();
    await again.write(0, Buffer.from('x'));
  });

  it('a failed writable open (damaged disk) releases the lock it took', async () => {
    const d = await create();
    await d.close();
    fs.writeFileSync(file, 'garbage');
    expect(await codeOf(Disk.open(file))).toBe('CHAIN_CORRUPT');
    expect(await codeOf(Disk.open(file))).toBe('CHAIN_CORRUPT'); // not LOCKED by the first attempt
    expect(fs.existsSync(`${file}.lock`)).toBe(false);
  });
});

describe('argument errors do not depend on concurrency', () => {
  it('a bad size is INVALID_ARGUMENT even while another create of the same disk holds the lock', async () => {
    const results = await Promise.all(
      [0, 2 ** 50 + 1, 0, 2 ** 51, 0, 2 ** 50 + 4096].map((size) => codeOf(Disk.create(file, { size, blockSize: BS }))),
    );
    expect(results).toEqual(Array(6).fill('INVALID_ARGUMENT'));
    expect(fs.readdirSync(dir)).toEqual([]);
  });
});
