/**
 * A disk shared by concurrent callers and by other processes: changes are applied
 * in call order under one mutex (a snapshot taken after a write sees it, one taken
 * before does not), reads during writes see whole blocks, and a disk held by another
 * process is LOCKED for writers here while readers may still open it.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Disk } from '../../lib/index.js';
import { holdInChild } from '../helpers/child-holder.js';
import { codeOf, pattern } from '../helpers/disk.js';
import { tempDir } from '../helpers/temp-dir.js';

const BS = 4096;
const SIZE = 64 * BS;

let dir: string;
let cleanup: () => void;
let file: string;

beforeEach(() => {
  ({ dir, cleanup } = tempDir('deltadisk-conc-'));
  file = path.join(dir, 'disk.chain');
});
afterEach(() => cleanup());

describe('concurrent calls on one open disk', () => {
  it('writes and snapshots issued together apply in call order', async () => {
    const d = await Disk.create(file, { size: SIZE, blockSize: BS });
    try {
      const calls: Promise<unknown>[] = [];
      for (let i = 0; i < 8; i++) {
        calls.push(d.write(0, pattern(BS, i)));
        calls.push(d.snapshot(`s${i}`));
      }
      calls.push(d.write(0, pattern(BS, 100)));
      await Promise.all(calls);
      for (let i = 0; i < 8; i++) {
        const r = await d.openSnapshot(`s${i}`);
        expect((await r.read(0, BS)).equals(pattern(BS, i)), `s${i}`).toBe(true);
        await r.close();
      }
      expect((await d.read(0, BS)).equals(pattern(BS, 100))).toBe(true);
    } finally {
      await d.close();
    }
  });

  it('overlapping unaligned writes issued together end as if run one after another', async () => {
    const d = await Disk.create(file, { size: SIZE, blockSize: BS });
    try {
      const expected = Buffer.alloc(SIZE);
      const writes: Promise<void>[] = [];
      for (let i = 0; i < 30; i++) {
        const off = (i * 1777) % (SIZE - 3 * BS);
        const data = pattern(BS + 500 + i, i);
        data.copy(expected, off);
        writes.push(d.write(off, data));
      }
      await Promise.all(writes);
      expect((await d.read(0, SIZE)).equals(expected)).toBe(true);
    } finally {
      await d.close();
    }
  });

  it('reads during writes see each block wholly old or wholly new', async () => {
    const d = await Disk.create(file, { size: SIZE, blockSize: BS });
    try {
      const olds = pattern(SIZE, 1);
      const news = pattern(SIZE, 2);
      await d.write(0, olds);
      let done = false;
      const writer = (async () => {
        for (let b = 0; b < SIZE / BS; b++) await d.write(b * BS, news.subarray(b * BS, (b + 1) * BS));
        done = true;
      })();
      let reads = 0;
      while (!done) {
        const data = await d.read(0, SIZE);
        reads++;
        for (let b = 0; b < SIZE / BS; b++) {
          const blk = data.subarray(b * BS, (b + 1) * BS);
          expect(blk.equals(olds.subarray(b * BS, (b + 1) * BS)) || blk.equals(news.subarray(b * BS, (b + 1) * BS)), `block ${b}`).toBe(true);
        }
      }
      await writer;
      expect(reads).toBeGreaterThan(0);
    } finally {
      await d.close();
    }
  });
});

describe('a disk held by another process', () => {
  it('is LOCKED for writers here (naming that process) and open to readers; free once released', async () => {
    const d = await Disk.create(file, { size: SIZE, blockSize: BS });
    await d.write(0, pattern(BS, 1));
    await d.close();
    const child = await holdInChild(file, 'disk');
    try {
      const err = await Disk.open(file).catch((e: unknown) => e);
      expect(err).toMatchObject({ code: 'LOCKED', holder: { pid: child.pid, purpose: 'open' } });
      expect(await codeOf(Disk.create(file, { size: SIZE }))).toBe('ALREADY_EXISTS');
      const ro = await Disk.open(file, { readOnly: true });
      expect((await ro.read(0, BS)).equals(pattern(BS, 1))).toBe(true);
      await ro.close();
    } finally {
      await child.release();
    }
    const again = await Disk.open(file);
    await again.close();
  });

  it('a holder killed with SIGKILL leaves a disk that opens, with its flushed data', async () => {
    const d = await Disk.create(file, { size: SIZE, blockSize: BS });
    await d.write(0, pattern(BS, 5));
    await d.close();
    const child = await holdInChild(file, 'disk');
    await child.kill();
    const again = await Disk.open(file);
    try {
      expect((await again.read(0, BS)).equals(pattern(BS, 5))).toBe(true);
    } finally {
      await again.close();
    }
  });
});

describe('one disk reached by two paths', () => {
  it('a symlinked directory leads to the same lock', async () => {
    const d = await Disk.create(file, { size: SIZE, blockSize: BS });
    try {
      fs.symlinkSync(dir, `${dir}-alias`);
      const other = path.join(`${dir}-alias`, 'disk.chain');
      expect(await codeOf(Disk.open(other))).toBe('LOCKED');
    } finally {
      await d.close();
      fs.rmSync(`${dir}-alias`);
    }
  });
});
