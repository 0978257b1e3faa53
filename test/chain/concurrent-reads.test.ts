/**
 * Reads of the current state do not take the disk's mutex, so they run while a
 * snapshot is deleted and its layer merged away. They must keep returning the
 * right bytes (found by the NBD server: a live snapshot deletion gave a running
 * client EBADF), and closing the disk must still close every layer file.
 */
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { Disk } from '../../lib/index.js';
import { tempDir } from '../helpers/temp-dir.js';

function openFilesUnder(dir: string): string[] {
  const out: string[] = [];
  for (const fd of fs.readdirSync('/proc/self/fd')) {
    try {
      const target = fs.readlinkSync(path.join('/proc/self/fd', fd));
      if (target.startsWith(dir)) out.push(target);
    } catch {
      // Closed meanwhile.
    }
  }
  return out;
}

describe.skipIf(process.platform !== 'linux')('reads of the current state during merges', () => {
  it('return the right bytes while deleteSnapshot merges layers, and close leaves no file open', async () => {
    const { dir, cleanup } = tempDir();
    try {
      const bs = 4096;
      const n = 256;
      const disk = await Disk.create(path.join(dir, 'd.chain'), { size: n * bs, blockSize: bs, dedup: false });
      for (let b = 0; b < n; b += 2) await disk.write(b * bs, Buffer.alloc(bs, 1 + (b % 200)));
      await disk.snapshot('s1');
      for (let b = 1; b < n; b += 4) await disk.write(b * bs, Buffer.alloc(bs, 2));
      await disk.snapshot('s2');
      await disk.write(0, Buffer.alloc(bs, 3));
      await disk.snapshot('s3');
      const expected = await disk.read(0, n * bs);
      let stop = false;
      let reads = 0;
      const failures: string[] = [];
      const readers = Array.from({ length: 2 }, async () => {
        while (!stop) {
          // Let the merge's own I/O through between reads.
          await new Promise((r) => setImmediate(r));
          try {
            if (!(await disk.read(0, n * bs)).equals(expected)) failures.push('wrong bytes');
            reads++;
          } catch (err) {
            failures.push(String((err as Error).message));
          }
        }
      });
      await disk.deleteSnapshot('s1');
      await disk.deleteSnapshot('s3');
      stop = true;
      await Promise.all(readers);
      expect(failures).toEqual([]);
      expect(reads).toBeGreaterThan(4);
      expect(await disk.read(0, n * bs)).toEqual(expected);
      await disk.close();
      expect(openFilesUnder(dir)).toEqual([]);
    } finally {
      cleanup();
    }
  });
});
