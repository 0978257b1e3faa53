/**
 * exportRawFile: the image reads exactly as the disk, to the last byte of a size
 * that is not a multiple of the block size or of a page; zeros become holes; a
 * large image bypasses the page cache, and an export that fails leaves nothing; nor
 * does a flatten into a new disk that fails.
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { exportRawFile } from '../../lib/chain/export-raw.js';
import { flatten } from '../../lib/chain/flatten.js';
import { Disk } from '../../lib/index.js';
import { nodeFileSystem } from '../../lib/io/node-file-system.js';
import { DirectProbeFS } from '../helpers/direct-fs.js';
import { tempDir } from '../helpers/temp-dir.js';

const MiB = 1024 * 1024;
const BS = 64 * 1024;
/** Not a multiple of a page: the image's last page is partial. */
const SIZE = 24 * MiB + 5000;

let dir: string;
let cleanup: () => void;
beforeEach(() => ({ dir, cleanup } = tempDir('deltadisk-export-')));
afterEach(() => cleanup());

async function makeDisk(): Promise<{ disk: Disk; expected: Buffer }> {
  const disk = await Disk.create(path.join(dir, 'disk.chain'), { size: SIZE, blockSize: BS });
  const expected = Buffer.alloc(SIZE);
  const put = async (offset: number, data: Buffer): Promise<void> => {
    await disk.write(offset, data);
    data.copy(expected, offset);
  };
  await put(0, randomBytes(3 * BS + 100)); // ends mid-block, mid-page
  await put(4 * MiB - BS, randomBytes(2 * BS)); // across an export chunk's edge
  await put(9 * MiB, randomBytes(5 * MiB + 7)); // longer than a staging buffer
  await put(SIZE - 300, randomBytes(300)); // the last, partial page
  await disk.snapshot('s');
  return { disk, expected };
}

/** Exports makeDisk's snapshot through `probe`; the image must read as the disk. */
async function exportThrough(probe: DirectProbeFS): Promise<{ probe: DirectProbeFS; out: string }> {
  const { disk, expected } = await makeDisk();
  const out = path.join(dir, 'out.raw');
  const reader = await disk.openSnapshot('s');
  await exportRawFile(reader, out, { fs: probe });
  await reader.close();
  await disk.close();
  expect(fs.readFileSync(out).equals(expected)).toBe(true);
  return { probe, out };
}

describe('exportRawFile', () => {
  it('writes the disk byte for byte, directly, with holes where it reads zeros', async () => {
    const { probe, out } = await exportThrough(new DirectProbeFS(nodeFileSystem));
    // 5.3 MiB of data in 87 blocks and the partial last one, all of it direct; the rest holes.
    expect(probe.directBytes).toBeGreaterThanOrEqual(87 * BS + 5000);
    expect(fs.statSync(out).blocks * 512).toBeLessThan(7 * MiB);
    expect(fs.readdirSync(dir).filter((n) => n.includes('.tmp-'))).toEqual([]);
  });

  it('writes the same image through the page cache where direct writes are refused', async () => {
    const { probe } = await exportThrough(new DirectProbeFS(nodeFileSystem, 1));
    expect(probe.plainBytes).toBeGreaterThan(0);
  });
});

describe('flatten', () => {
  it('a copy into a new disk that fails midway leaves no disk behind, and one that finishes reads as the source', async () => {
    const { disk, expected } = await makeDisk();
    const before = fs.readdirSync(dir).sort();
    let seen = 0;
    const failing = flatten(disk.currentReader(), path.join(dir, 'copy.chain'), {
      format: 'chain',
      onProgress: (n) => {
        seen += n;
        if (seen > 8 * MiB) throw new Error('interrupted');
      },
    });
    await expect(failing).rejects.toThrow('interrupted');
    expect(fs.readdirSync(dir).sort()).toEqual(before);

    await flatten(disk.currentReader(), path.join(dir, 'copy.chain'), { format: 'chain' });
    await disk.close();
    const copy = await Disk.open(path.join(dir, 'copy.chain'), { readOnly: true });
    try {
      expect(Buffer.from(await copy.read(0, SIZE)).equals(expected)).toBe(true);
    } finally {
      await copy.close();
    }
  });
});
