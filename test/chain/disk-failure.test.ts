/**
 * One failed fsync through the Disk API (rule 5): the change that met it fails, the
 * disk then refuses every change with HANDLE_BROKEN while reads go on, and a reopen
 * recovers everything acknowledged before. The exhaustive fault and power-loss runs
 * live elsewhere; this pins the behaviour a caller sees.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Disk } from '../../lib/index.js';
import { nodeFileSystem } from '../../lib/io/node-file-system.js';
import { codeOf, pattern } from '../helpers/disk.js';
import { FaultFS } from '../harness/fault-fs.js';
import { tempDir } from '../helpers/temp-dir.js';

const BS = 4096;
const SIZE = 16 * BS;

let dir: string;
let cleanup: () => void;
let file: string;

beforeEach(() => {
  ({ dir, cleanup } = tempDir('deltadisk-failure-'));
  file = path.join(dir, 'disk.chain');
});
afterEach(() => cleanup());

describe('a failed fsync', () => {
  for (const code of ['EIO', 'ENOSPC'] as const) {
    it(`(${code}) breaks the disk until it is reopened; acknowledged data survives`, async () => {
      const ffs = new FaultFS(nodeFileSystem, { trace: true });
      const d = await Disk.create(file, { size: SIZE, blockSize: BS, fs: ffs, lock: true });
      await d.write(0, pattern(BS, 1));
      await d.flush(); // acknowledged
      await d.write(BS, pattern(BS, 2));
      ffs.fail({ op: 'datasync', path: (p) => p.endsWith('.delta'), code, times: 1 });
      expect(await codeOf(d.flush())).toBe(code === 'EIO' ? 'IO_ERROR' : 'NO_SPACE');
      // The device works again, the disk must not trust it.
      expect(await codeOf(d.write(2 * BS, pattern(BS, 3)))).toBe('HANDLE_BROKEN');
      expect(await codeOf(d.flush())).toBe('HANDLE_BROKEN');
      expect(await codeOf(d.snapshot('s'))).toBe('HANDLE_BROKEN');
      expect((await d.read(0, BS)).equals(pattern(BS, 1))).toBe(true);
      await d.close();
      const again = await Disk.open(file);
      try {
        expect((await again.read(0, BS)).equals(pattern(BS, 1))).toBe(true);
        const second = await again.read(BS, BS);
        // Unacknowledged: whole old (zeros) or whole new, never a mix.
        expect(second.equals(pattern(BS, 2)) || second.every((b) => b === 0)).toBe(true);
        await again.write(2 * BS, pattern(BS, 4));
        await again.flush();
      } finally {
        await again.close();
      }
    });
  }

  it('a failed descriptor replacement during a snapshot breaks the disk; the snapshot did not happen', async () => {
    const ffs = new FaultFS(nodeFileSystem, { trace: true });
    const d = await Disk.create(file, { size: SIZE, blockSize: BS, fs: ffs, lock: true });
    await d.write(0, pattern(BS, 1));
    ffs.fail({ op: 'rename', path: (p) => p === file, times: 1 });
    expect(await codeOf(d.snapshot('s'))).toBe('IO_ERROR');
    expect(await codeOf(d.write(0, Buffer.alloc(1)))).toBe('HANDLE_BROKEN');
    await d.close();
    const again = await Disk.open(file);
    try {
      expect(again.snapshots()).toEqual([]);
      expect((await again.read(0, BS)).equals(pattern(BS, 1))).toBe(true);
      await again.snapshot('s'); // and the name is free, the disk usable
    } finally {
      await again.close();
    }
  });

  it('a large write failing in one of its pieces: the disk breaks, and each block reads all-old or all-new after a reopen', async () => {
    const bs = 64 * 1024;
    const ffs = new FaultFS(nodeFileSystem);
    const d = await Disk.create(file, { size: 16 * 2 ** 20, blockSize: bs, fs: ffs, lock: true });
    const before = pattern(8 * 2 ** 20, 1);
    const after = pattern(8 * 2 ** 20, 2);
    await d.write(0, before);
    await d.flush();
    // An 8 MiB write is planned and appended in pieces: the third append fails.
    ffs.resetCounts();
    ffs.arm({ at: 3, ops: ['write'], errno: 'EIO', persistent: false });
    expect(await codeOf(d.write(0, after))).toBe('IO_ERROR');
    ffs.disarm();
    expect(await codeOf(d.write(0, after))).toBe('HANDLE_BROKEN');
    await d.close().catch(() => undefined);
    const r = await Disk.open(file, { readOnly: true, verifyReads: true });
    const got = await r.read(0, 8 * 2 ** 20);
    await r.close();
    let olds = 0;
    let news = 0;
    for (let at = 0; at < got.length; at += bs) {
      const block = got.subarray(at, at + bs);
      if (block.equals(before.subarray(at, at + bs))) olds++;
      else if (block.equals(after.subarray(at, at + bs))) news++;
    }
    expect(olds + news).toBe(128);
    expect(news).toBeGreaterThan(0); // the pieces before the failure landed
    expect(olds).toBeGreaterThan(0); // the ones from the failure on never did
  });
});

describe('a create that fails at any call', () => {
  // A failure after the descriptor's link (removing the temporary name, syncing the
  // directory) left the descriptor naming a first delta the failed create then
  // removed: a disk that no longer opened, and a retried create refused.
  it('leaves no disk, or one that opens; a retried create succeeds where none was left', async () => {
    const probe = new FaultFS(nodeFileSystem);
    await (await Disk.create(path.join(dir, 'probe.chain'), { size: SIZE, blockSize: BS, fs: probe, lock: true })).close();
    const calls = probe.calls;
    expect(calls).toBeGreaterThan(5);
    for (let at = 1; at <= calls; at++) {
      for (const code of ['EIO', 'ENOSPC'] as const) {
        const p = path.join(dir, `d-${at}-${code}.chain`);
        const ffs = new FaultFS(nodeFileSystem);
        ffs.arm({ at, ops: 'any', errno: code, persistent: false });
        const created = await Disk.create(p, { size: SIZE, blockSize: BS, fs: ffs, lock: true }).then(
          async (d) => (await d.close(), true),
          () => false,
        );
        const where = `${code} at call ${at} of ${calls}`;
        const opened = await Disk.open(p, { readOnly: true }).then(
          async (d) => {
            const zeros = (await d.read(0, SIZE)).every((b) => b === 0);
            await d.close();
            return zeros;
          },
          (err: unknown) => (err as { code?: string }).code ?? String(err),
        );
        if (created) expect(opened, where).toBe(true);
        else if (opened !== true) {
          // No disk at all: no descriptor (one naming a missing delta opens as NOT_FOUND too).
          expect({ opened, descriptor: fs.existsSync(p) }, where).toEqual({ opened: 'NOT_FOUND', descriptor: false });
          await (await Disk.create(p, { size: SIZE, blockSize: BS, lock: true })).close();
        }
      }
    }
  });
});
