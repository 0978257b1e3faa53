/**
 * Regression: `Disk.create` writes the first delta (`disk-000001.delta`, made
 * durable with a directory fsync) before the descriptor. A crash or a kill between
 * the two (SIGKILL alone is enough) left the delta without a descriptor, and every
 * later `Disk.create` of the same disk failed with ALREADY_EXISTS until someone
 * deleted it by hand.
 *
 * Now a create recognises exactly that leftover (the only delta of the name, no
 * longer than its header slots, with no header or the empty root header a create
 * writes) and removes it with any temporary descriptor. Anything else that could
 * hold data (a lost descriptor's deltas) still makes it ALREADY_EXISTS, untouched.
 *
 * Found while extending the crash explorer to `Disk.create`.
 */
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { Disk } from '../../lib/chain/disk.js';
import { MemoryFileSystem } from '../../lib/io/memory-file-system.js';
import { CrashFS } from '../harness/crash-fs.js';
import { exhaustiveCases, randomCases, type Recording } from '../harness/crash-explorer.js';
import { Rng } from '../harness/rng.js';

const DIR = '/c/vm';
const DESC = path.join(DIR, 'disk.chain');
const OPTIONS = { lock: false, size: 65536, blockSize: 4096 } as const;

async function recordCreate(): Promise<Recording> {
  const fs = new CrashFS();
  await fs.mkdirp(DIR);
  fs.checkpoint();
  const disk = await Disk.create(DESC, { ...OPTIONS, fs });
  const end = fs.length;
  const live = fs.liveFiles();
  await disk.close();
  return { fs, dir: DIR, marks: [{ start: 0, end }], end, live };
}

describe('regression: a create interrupted after its first delta', () => {
  it('does not block creating the disk again', async () => {
    const fs = new CrashFS();
    await fs.mkdirp(DIR);
    fs.checkpoint();
    const disk = await Disk.create(DESC, { ...OPTIONS, fs });
    await disk.close();
    // Every point at which the delta exists and the descriptor does not.
    let checked = 0;
    for (let point = 0; point <= fs.length; point++) {
      const { fs: crashed } = fs.crashState(point, { kind: 'keep-all' });
      const names = await crashed.readdir(DIR);
      if (!names.includes('disk-000001.delta') || names.includes('disk.chain')) continue;
      checked++;
      await expect(Disk.open(DESC, { fs: crashed, lock: false })).rejects.toMatchObject({ code: 'NOT_FOUND' });
      const again = await Disk.create(DESC, { ...OPTIONS, fs: crashed });
      await again.close();
    }
    expect(checked).toBeGreaterThan(0);
  });

  it('after a crash at any point (kept, dropped, torn whole sectors) the disk opens empty, or a retried create works', async () => {
    const rec = await recordCreate();
    const cases = [...exhaustiveCases(rec), ...randomCases(rec, new Rng(20260101), 200, 'sector')];
    let retried = 0;
    for (const c of cases) {
      const { fs } = rec.fs.crashState(c.point, c.policy);
      const opened = await Disk.open(DESC, { fs, lock: false }).catch((err: unknown) => err);
      let disk: Disk;
      if (opened instanceof Disk) {
        disk = opened;
      } else {
        expect(opened, `point ${c.point}`).toMatchObject({ code: 'NOT_FOUND' });
        disk = await Disk.create(DESC, { ...OPTIONS, fs });
        retried++;
      }
      expect((await disk.read(0, 65536)).every((b) => b === 0)).toBe(true);
      await disk.write(4096, Buffer.alloc(4096, 7));
      await disk.close();
      const again = await Disk.open(DESC, { fs, lock: false });
      expect((await again.read(4096, 4096)).every((b) => b === 7)).toBe(true);
      await again.close();
      expect((await fs.readdir(DIR)).sort()).toEqual(['disk-000001.delta', 'disk.chain']);
    }
    expect(retried).toBeGreaterThan(0);
  });

  describe('never removes what could hold data', () => {
    async function lostDescriptor(prepare: (disk: Disk) => Promise<void>): Promise<{ fs: MemoryFileSystem; before: Map<string, Uint8Array> }> {
      const fs = new MemoryFileSystem();
      await fs.mkdirp(DIR);
      const disk = await Disk.create(DESC, { ...OPTIONS, fs });
      await prepare(disk);
      await disk.close();
      await fs.unlink(DESC);
      const before = new Map<string, Uint8Array>();
      for (const n of await fs.readdir(DIR)) before.set(n, fs.readFileSync(path.join(DIR, n)));
      return { fs, before };
    }

    const cases: [string, (disk: Disk) => Promise<void>][] = [
      ['a flushed write in the first delta', async (d) => { await d.write(0, Buffer.alloc(4096, 1)); await d.flush(); }],
      ['an indexed write (header rewritten)', async (d) => { await d.write(0, Buffer.alloc(4096, 1)); }],
      ['a snapshot (two deltas)', async (d) => { await d.snapshot('s'); }],
      ['an empty first delta sealed by a snapshot whose other delta is gone', async (d) => { await d.snapshot('s'); }],
    ];
    for (const [name, prepare] of cases) {
      it(`refuses with ALREADY_EXISTS and changes nothing: ${name}`, async () => {
        const { fs, before } = await lostDescriptor(prepare);
        if (name.startsWith('an empty first delta sealed')) {
          await fs.unlink(path.join(DIR, 'disk-000002.delta'));
          before.delete('disk-000002.delta');
        }
        await expect(Disk.create(DESC, { ...OPTIONS, fs })).rejects.toMatchObject({ code: 'ALREADY_EXISTS' });
        const after = new Map<string, Uint8Array>();
        for (const n of await fs.readdir(DIR)) after.set(n, fs.readFileSync(path.join(DIR, n)));
        expect(after).toEqual(before);
      });
    }
  });
});
