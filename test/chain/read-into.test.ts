/**
 * Disk.readInto and DiskReader.readInto: the same bytes as read(), into the
 * caller's buffer, with the same argument checks.
 */
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { Disk } from '../../lib/index.js';
import { tempDir } from '../helpers/temp-dir.js';

describe('readInto', () => {
  it('fills the buffer exactly as read() returns, for the current state and a snapshot', async () => {
    const { dir, cleanup } = tempDir();
    try {
      const disk = await Disk.create(path.join(dir, 'd.chain'), { size: 64 * 4096, blockSize: 4096 });
      await disk.write(1000, Buffer.alloc(10_000, 7));
      await disk.snapshot('s');
      await disk.write(5000, Buffer.alloc(3000, 9));
      await disk.writeZeroes(40_000, 4096);
      const snap = await disk.openSnapshot('s');
      for (const [offset, length] of [[0, 64 * 4096], [999, 10_002], [4097, 1], [64 * 4096 - 3, 3], [7, 0]] as const) {
        const a = Buffer.alloc(length, 0xee);
        await disk.readInto(a, offset);
        expect(a).toEqual(await disk.read(offset, length));
        const b = Buffer.alloc(length, 0xee);
        await snap.readInto(b, offset);
        expect(b).toEqual(await snap.read(offset, length));
      }
      await expect(disk.readInto(Buffer.alloc(2), 64 * 4096 - 1)).rejects.toMatchObject({ code: 'OUT_OF_RANGE' });
      await expect(snap.readInto(Buffer.alloc(1), -1)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
      await expect(disk.readInto(new Uint8Array(4) as Buffer, 0)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
      await snap.close();
      await expect(snap.readInto(Buffer.alloc(1), 0)).rejects.toMatchObject({ code: 'NOT_OPEN' });
      await disk.close();
    } finally {
      cleanup();
    }
  });
});
