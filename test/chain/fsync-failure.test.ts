/**
 * After a failed fsync the disk refuses every change until it is reopened (DESIGN
 * crash-safety rule 5; QEMU's "make bdrv_flush() fail permanently"): the kernel
 * may have dropped the pages it could not write, so a later fsync could succeed
 * without the data ever reaching the disk. Shown here on real files, step by step;
 * test/chain/faults.test.ts checks it at every fsync of every workload.
 */
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { Disk } from '../../lib/chain/disk.js';
import { nodeFileSystem } from '../../lib/io/node-file-system.js';
import { FaultFS } from '../harness/fault-fs.js';
import { tempDir } from '../helpers/temp-dir.js';

describe('a failed fsync', () => {
  it('breaks the disk until reopened, and loses nothing acknowledged before it', async () => {
    const { dir, cleanup } = tempDir();
    try {
      const p = path.join(dir, 'disk.chain');
      const ffs = new FaultFS(nodeFileSystem);
      const disk = await Disk.create(p, { fs: ffs, size: 1 << 20, blockSize: 4096 });
      const acked = Buffer.alloc(4096, 1);
      await disk.write(0, acked);
      await disk.flush();

      await disk.write(4096, Buffer.alloc(4096, 2));
      ffs.arm({ at: 1, ops: ['datasync'], errno: 'EIO', persistent: false });
      await expect(disk.flush()).rejects.toMatchObject({ name: 'DeltaDiskError', code: 'IO_ERROR' });
      // The fault was transient: the file system works again, yet the disk refuses.
      expect(ffs.injected).toHaveLength(1);
      await expect(disk.flush()).rejects.toMatchObject({ code: 'HANDLE_BROKEN' });
      await expect(disk.write(8192, Buffer.alloc(10, 3))).rejects.toMatchObject({ code: 'HANDLE_BROKEN' });
      await expect(disk.snapshot('after')).rejects.toMatchObject({ code: 'HANDLE_BROKEN' });
      // Reads still work; closing a broken disk writes nothing and does not throw.
      expect(Buffer.compare(await disk.read(0, 4096), acked)).toBe(0);
      await disk.close();

      const again = await Disk.open(p, { fs: ffs });
      try {
        expect(Buffer.compare(await again.read(0, 4096), acked)).toBe(0);
        const second = await again.read(4096, 4096);
        // The unacknowledged write reads wholly old or wholly new.
        expect([Buffer.alloc(4096, 0), Buffer.alloc(4096, 2)].some((b) => b.equals(second))).toBe(true);
        await again.write(8192, Buffer.alloc(10, 3));
        await again.flush();
      } finally {
        await again.close();
      }
    } finally {
      cleanup();
    }
  });
});
