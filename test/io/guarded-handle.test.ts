/**
 * GuardedHandle (DESIGN rule 5): after a failed write, fsync or truncate the handle
 * is broken; every later change is refused with HANDLE_BROKEN, even if the device
 * has recovered, while reads keep working. A sync with nothing changed through the
 * handle since the last one that covered everything is skipped, and only then.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { isDeltaDiskError } from '../../lib/errors.js';
import type { FileHandle } from '../../lib/io/file-system.js';
import { GuardedHandle } from '../../lib/io/guarded-handle.js';
import { nodeFileSystem } from '../../lib/io/node-file-system.js';
import { FaultFS, type FaultOp as Op } from '../harness/fault-fs.js';
import { codeOf } from '../helpers/errors.js';
import { tempDir } from '../helpers/temp-dir.js';

let dir: string;
let cleanup: () => void;

beforeEach(() => {
  ({ dir, cleanup } = tempDir('deltadisk-guarded-'));
});
afterEach(() => cleanup());

/** A real file's handle that counts its syncs, and whose writes first wait for `hold()`. */
async function counting(file: string, hold: () => Promise<void> | undefined = () => undefined): Promise<{ handle: FileHandle; syncs: number }> {
  const inner = await nodeFileSystem.open(file, 'readWrite');
  const c = {
    syncs: 0,
    handle: {
      path: inner.path,
      read: (...a) => inner.read(...a),
      readv: (...a) => inner.readv(...a),
      truncate: (n) => inner.truncate(n),
      stat: () => inner.stat(),
      close: () => inner.close(),
      datasync: async () => {
        c.syncs++;
        await inner.datasync();
      },
      write: async (buffers, position) => {
        await hold();
        await inner.write(buffers, position);
      },
    } as FileHandle,
  };
  return c;
}

async function guarded(failOp: Op, code = 'EIO', times = 1) {
  const file = path.join(dir, 'f');
  fs.writeFileSync(file, 'abcdef');
  const ffs = new FaultFS(nodeFileSystem, { trace: true }).fail({ op: failOp, code, times });
  const h = new GuardedHandle(await ffs.open(file, 'readWrite'));
  return { h, file };
}

describe('GuardedHandle', () => {
  it('skips a sync only when everything written through it is synced already', async () => {
    const file = path.join(dir, 'f');
    fs.writeFileSync(file, 'abcdef');
    let holdWrite: Promise<void> | undefined;
    const c = await counting(file, () => holdWrite);
    const h = new GuardedHandle(c.handle);
    // The first sync always runs: the file may hold another process's unsynced writes.
    await h.datasync();
    expect(c.syncs).toBe(1);
    await h.datasync();
    expect(c.syncs).toBe(1);
    await h.write([Buffer.from('X')], 0);
    await h.datasync();
    await h.datasync();
    expect(c.syncs).toBe(2);
    await h.truncate(3);
    await h.datasync();
    expect(c.syncs).toBe(3);
    // A write still in flight when a sync starts is not covered by it.
    let release!: () => void;
    holdWrite = new Promise((r) => (release = r));
    const pending = h.write([Buffer.from('Y')], 1);
    const sync = h.datasync();
    release();
    await Promise.all([pending, sync]);
    expect(c.syncs).toBe(4);
    await h.datasync();
    expect(c.syncs).toBe(5);
    await h.datasync();
    expect(c.syncs).toBe(5);
    await h.close();
    expect(fs.readFileSync(file, 'utf8')).toBe('XYc');
  });

  it('passes everything through while nothing fails', async () => {
    const { h, file } = await guarded('close', 'EIO', 0);
    await h.write([Buffer.from('XY')], 1);
    await h.datasync();
    await h.truncate(4);
    expect(h.broken).toBe(false);
    expect((await h.stat()).size).toBe(4);
    expect(h.path).toBe(file);
    await h.close();
    expect(fs.readFileSync(file, 'utf8')).toBe('aXYd');
  });

  for (const [op, call] of [
    ['datasync', (h: GuardedHandle) => h.datasync()],
    ['write', (h: GuardedHandle) => h.write([Buffer.from('z')], 0)],
    ['truncate', (h: GuardedHandle) => h.truncate(1)],
  ] as const) {
    it(`a failing ${op} breaks the handle: HANDLE_BROKEN after, though the fault is gone`, async () => {
      const { h, file } = await guarded(op);
      expect(await codeOf(call(h))).toBe('IO_ERROR');
      expect(h.broken).toBe(true);
      // The injected fault fired once only: the device "works" again, the handle must not.
      expect(await codeOf(h.datasync())).toBe('HANDLE_BROKEN');
      expect(await codeOf(h.write([Buffer.from('q')], 0))).toBe('HANDLE_BROKEN');
      expect(await codeOf(h.truncate(0))).toBe('HANDLE_BROKEN');
      // Reads still work: what is on disk can be looked at, not changed.
      const buf = Buffer.alloc(3);
      expect(await h.read(buf, 0, 3, 0)).toBe(3);
      await h.close();
      expect(fs.readFileSync(file, 'utf8').length).toBeGreaterThan(0);
    });
  }

  it('HANDLE_BROKEN names the file and carries the first failure as its cause', async () => {
    const { h, file } = await guarded('datasync');
    const first = await h.datasync().catch((e: unknown) => e);
    const second = await h.write([Buffer.from('x')], 0).catch((e: unknown) => e);
    expect(isDeltaDiskError(second, 'HANDLE_BROKEN')).toBe(true);
    expect((second as Error).cause).toBe(first);
    expect(isDeltaDiskError(second) && second.path).toBe(file);
    await h.close();
  });

  it('a full device is NO_SPACE, and breaks the handle as well', async () => {
    const { h } = await guarded('write', 'ENOSPC');
    expect(await codeOf(h.write([Buffer.from('x')], 0))).toBe('NO_SPACE');
    expect(await codeOf(h.write([Buffer.from('x')], 0))).toBe('HANDLE_BROKEN');
    await h.close();
  });

  it('a failed read does not break the handle', async () => {
    const { h } = await guarded('read');
    await expect(h.read(Buffer.alloc(1), 0, 1, 0)).rejects.toMatchObject({ code: 'EIO' });
    expect(h.broken).toBe(false);
    await h.datasync();
    await h.close();
  });

  it('counts a write through a second (direct) handle as its own: synced, breaking on failure, EINVAL only refused', async () => {
    const file = path.join(dir, 'f');
    fs.writeFileSync(file, 'abcdef');
    const c = await counting(file);
    const h = new GuardedHandle(c.handle);
    await h.datasync();
    expect(c.syncs).toBe(1);
    const other = await nodeFileSystem.open(file, 'readWrite');
    expect(await h.writeThrough(other, [Buffer.from('XY')], 0)).toBe(true);
    await h.datasync();
    expect(c.syncs).toBe(2);
    expect(fs.readFileSync(file, 'utf8')).toBe('XYcdef');
    // Refused before anything is written: not broken.
    const refusing = new FaultFS(nodeFileSystem).fail({ op: 'write', code: 'EINVAL', times: 1 });
    const r = await refusing.open(file, 'readWrite');
    expect(await h.writeThrough(r, [Buffer.from('Z')], 0)).toBe(false);
    expect(h.broken).toBe(false);
    // Any other failure breaks it, as a failed write of its own would.
    const failing = new FaultFS(nodeFileSystem).fail({ op: 'write', code: 'EIO', times: 1 });
    const f = await failing.open(file, 'readWrite');
    expect(await codeOf(h.writeThrough(f, [Buffer.from('Z')], 0))).toBe('IO_ERROR');
    expect(h.broken).toBe(true);
    expect(await codeOf(h.write([Buffer.from('Q')], 0))).toBe('HANDLE_BROKEN');
    for (const x of [other, r, f]) await x.close();
    await h.close();
  });
});
