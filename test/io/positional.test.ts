/**
 * readExactly / readInto / readUpTo: whole reads or a precise error. A file that
 * ends early is TRUNCATED (with the offset where it ended), an OS failure IO_ERROR;
 * short reads from the OS are completed, never returned as data.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { isDeltaDiskError } from '../../lib/errors.js';
import type { FileHandle } from '../../lib/io/file-system.js';
import { nodeFileSystem } from '../../lib/io/node-file-system.js';
import { readExactly, readInto, readUpTo } from '../../lib/io/positional.js';
import { FaultFS } from '../harness/fault-fs.js';
import { tempDir } from '../helpers/temp-dir.js';

let dir: string;
let cleanup: () => void;
let file: string;
const content = Buffer.from(Array.from({ length: 1000 }, (_, i) => i & 0xff));

beforeEach(() => {
  ({ dir, cleanup } = tempDir('deltadisk-positional-'));
  file = path.join(dir, 'f');
  fs.writeFileSync(file, content);
});
afterEach(() => cleanup());

/** A handle whose reads return at most `cap` bytes, as a pipe or network file system may. */
function trickle(inner: FileHandle, cap: number): FileHandle {
  return {
    path: inner.path,
    read: (b, o, l, p) => inner.read(b, o, Math.min(l, cap), p),
    readv: (b, p) => inner.readv(b.length > 0 ? [b[0]!.subarray(0, Math.min(b[0]!.length, cap))] : [], p),
    write: (b, p) => inner.write(b, p),
    datasync: () => inner.datasync(),
    truncate: (l) => inner.truncate(l),
    stat: () => inner.stat(),
    close: () => inner.close(),
  };
}

describe('positional reads', () => {
  it('readExactly returns exactly the bytes asked for, completing short reads', async () => {
    const h = trickle(await nodeFileSystem.open(file, 'read'), 7);
    expect((await readExactly(h, 100, 500)).equals(content.subarray(100, 600))).toBe(true);
    expect((await readExactly(h, 0, 0)).length).toBe(0);
    await h.close();
  });

  it('readInto fills a view inside a larger buffer and nothing around it', async () => {
    const h = await nodeFileSystem.open(file, 'read');
    const big = Buffer.alloc(20, 0xee);
    await readInto(h, big.subarray(5, 15), 990);
    expect([...big.subarray(0, 5)]).toEqual([0xee, 0xee, 0xee, 0xee, 0xee]);
    expect(big.subarray(5, 15).equals(content.subarray(990, 1000))).toBe(true);
    expect([...big.subarray(15)]).toEqual([0xee, 0xee, 0xee, 0xee, 0xee]);
    await h.close();
  });

  it('a read past the end is TRUNCATED, naming the file and where it ended', async () => {
    const h = await nodeFileSystem.open(file, 'read');
    try {
      await readExactly(h, 900, 200);
      expect.unreachable();
    } catch (err) {
      expect(isDeltaDiskError(err, 'TRUNCATED')).toBe(true);
      expect(isDeltaDiskError(err) && [err.path, err.offset]).toEqual([file, 1000]);
    }
    await expect(readExactly(h, 5000, 1)).rejects.toMatchObject({ code: 'TRUNCATED', offset: 5000 });
    await h.close();
  });

  it('an OS failure is IO_ERROR with the errno error as cause', async () => {
    const ffs = new FaultFS(nodeFileSystem, { trace: true }).fail({ op: 'read', code: 'EIO' });
    const h = await ffs.open(file, 'read');
    const err = await readExactly(h, 0, 10).catch((e: unknown) => e);
    expect(isDeltaDiskError(err, 'IO_ERROR')).toBe(true);
    expect(((err as Error).cause as NodeJS.ErrnoException).code).toBe('EIO');
    await expect(readUpTo(h, 0, 10)).rejects.toMatchObject({ code: 'IO_ERROR' });
    await h.close();
  });

  it('readUpTo returns what there is, fewer bytes only at end of file', async () => {
    const h = trickle(await nodeFileSystem.open(file, 'read'), 3);
    expect((await readUpTo(h, 0, 100)).equals(content.subarray(0, 100))).toBe(true);
    expect((await readUpTo(h, 950, 100)).equals(content.subarray(950))).toBe(true);
    expect((await readUpTo(h, 2000, 100)).length).toBe(0);
    await h.close();
  });
});
