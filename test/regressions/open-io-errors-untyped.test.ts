/**
 * Regression: I/O errors from fstat and close while opening a disk escaped as raw
 * errno errors instead of DeltaDiskErrors: an EIO from closing the descriptor after
 * reading it (readBounded), from fstat of a delta while loading it (GuardedHandle
 * passed stat errors through) and from fstat of the base image. Found by the crash
 * explorer injecting EIO at every call of a recovery.
 */
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { Disk } from '../../lib/chain/disk.js';
import { DeltaDiskError } from '../../lib/errors.js';
import { MemoryFileSystem } from '../../lib/io/memory-file-system.js';
import { FaultFS, type FaultOp } from '../harness/fault-fs.js';

async function fixture(): Promise<{ ffs: FaultFS; p: string }> {
  const mem = new MemoryFileSystem();
  await mem.mkdirp('/r/vm');
  const h = await mem.open('/r/vm/base.raw', 'createExclusive');
  await h.write([Buffer.alloc(65536, 1)], 0);
  await h.close();
  const p = path.join('/r/vm', 'disk.chain');
  const disk = await Disk.create(p, { fs: mem, base: '/r/vm/base.raw', blockSize: 4096 });
  await disk.write(0, Buffer.alloc(4096, 2));
  await disk.close();
  return { ffs: new FaultFS(mem), p };
}

describe('regression: I/O errors while opening a disk are typed', () => {
  for (const op of ['close', 'fstat'] as FaultOp[]) {
    it(`an EIO from every ${op} during open is an IO_ERROR`, async () => {
      const { ffs, p } = await fixture();
      ffs.resetCounts();
      await (await Disk.open(p, { fs: ffs })).close();
      const calls = ffs.callsOf([op]);
      expect(calls).toBeGreaterThan(0);
      for (let at = 1; at <= calls; at++) {
        ffs.arm({ at, ops: [op], errno: 'EIO', persistent: false });
        const err = await Disk.open(p, { fs: ffs }).then(
          async (d) => {
            await d.close().catch((e: unknown) => e);
            return undefined;
          },
          (e: unknown) => e,
        );
        ffs.disarm();
        if (err !== undefined) {
          expect(err, `${op} #${at}`).toBeInstanceOf(DeltaDiskError);
          expect((err as DeltaDiskError).code).toBe('IO_ERROR');
        }
      }
    });
  }
});
