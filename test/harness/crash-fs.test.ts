/**
 * The power-loss file system itself: what survives a crash under each policy. A
 * harness that kept too much would hide missing fsyncs, so these pin the rules down,
 * and the last tests prove the whole crash checker fails a chain running on a device
 * that ignores flushes.
 */
import { describe, expect, it } from 'vitest';
import type { FileHandle, FileSystem } from '../../lib/io/file-system.js';
import { chainWorkloads } from './chain-workloads.js';
import { CrashFS } from './crash-fs.js';
import { exhaustiveCases, explore, randomCases, recordWorkload } from './crash-explorer.js';
import { Figures } from './figures.js';
import { lyingFs } from './lying-fs.js';
import { Rng } from './rng.js';

const DIR = '/d';

async function setup(): Promise<CrashFS> {
  const fs = new CrashFS();
  await fs.mkdirp(DIR);
  fs.checkpoint();
  return fs;
}

async function readAll(fs: FileSystem, p: string): Promise<Buffer | undefined> {
  let h: FileHandle;
  try {
    h = await fs.open(p, 'read');
  } catch {
    return undefined;
  }
  const st = await h.stat();
  const b = Buffer.alloc(st.size);
  await h.read(b, 0, st.size, 0);
  await h.close();
  return b;
}

describe('CrashFS', () => {
  it('keeps synced data and drops unsynced data', async () => {
    const fs = await setup();
    const h = await fs.open(`${DIR}/f`, 'createExclusive');
    await h.write([Buffer.from('aaaa')], 0);
    await h.datasync();
    await fs.syncDir(DIR);
    await h.write([Buffer.from('bb')], 4);
    const end = fs.length;
    expect((await readAll(fs.crashState(end, { kind: 'drop-all' }).fs, `${DIR}/f`))?.toString()).toBe('aaaa');
    expect((await readAll(fs.crashState(end, { kind: 'keep-all' }).fs, `${DIR}/f`))?.toString()).toBe('aaaabb');
    // Before the datasync the data may be lost, and before the directory fsync the name.
    expect((await readAll(fs.crashState(2, { kind: 'drop-all' }).fs, `${DIR}/f`))).toBeUndefined();
    expect(fs.pendingAt(end)).toEqual([4]);
  });

  it('makes a name durable only with a directory fsync', async () => {
    const fs = await setup();
    const h = await fs.open(`${DIR}/tmp`, 'createExclusive');
    await h.write([Buffer.from('new')], 0);
    await h.datasync();
    await h.close();
    await fs.rename(`${DIR}/tmp`, `${DIR}/target`);
    const beforeSync = fs.length;
    await fs.syncDir(DIR);
    const dropped = fs.crashState(beforeSync, { kind: 'drop-all' }).fs;
    expect(await dropped.readdir(DIR)).toEqual([]);
    const kept = fs.crashState(beforeSync, { kind: 'keep-all' }).fs;
    expect(await kept.readdir(DIR)).toEqual(['target']);
    const synced = fs.crashState(fs.length, { kind: 'drop-all' }).fs;
    expect((await readAll(synced, `${DIR}/target`))?.toString()).toBe('new');
  });

  it('keeps a prefix of pending operations in order', async () => {
    const fs = await setup();
    const h = await fs.open(`${DIR}/f`, 'createExclusive');
    await fs.syncDir(DIR);
    for (let i = 0; i < 4; i++) await h.write([Buffer.from(String(i))], i);
    const end = fs.length;
    expect(fs.pendingAt(end)).toHaveLength(4);
    expect((await readAll(fs.crashState(end, { kind: 'prefix', keep: 2 }).fs, `${DIR}/f`))?.toString()).toBe('01');
  });

  it('tears writes into old, new and garbage sectors', async () => {
    const fs = await setup();
    const h = await fs.open(`${DIR}/f`, 'createExclusive');
    const old = Buffer.alloc(8192, 1);
    await h.write([old], 0);
    await h.datasync();
    await fs.syncDir(DIR);
    const fresh = Buffer.alloc(4096, 2);
    await h.write([fresh], 1000); // touches two 4 KiB sectors, nine 512 B sectors
    const end = fs.length;
    let garbage = 0;
    let outside = 0;
    for (let seed = 0; seed < 50; seed++) {
      for (const tearScope of ['range', 'sector'] as const) {
        const { fs: c, info } = fs.crashState(end, { kind: 'random', seed, sectorSize: 512, tearScope, pKeep: 0, pTear: 1 });
        expect(info.torn).toBe(1);
        const b = (await readAll(c, `${DIR}/f`))!;
        expect(b.length).toBe(8192);
        const inside = b.subarray(1000, 5096);
        if (inside.some((x) => x !== 1 && x !== 2)) garbage++;
        // Garbage outside the written bytes only in 'sector' scope, and only in touched sectors.
        const around = Buffer.concat([b.subarray(0, 1000), b.subarray(5096)]);
        if (around.some((x) => x !== 1)) {
          expect(tearScope).toBe('sector');
          outside++;
        }
        expect(b.subarray(0, 512).every((x) => x === 1)).toBe(true);
        expect(b.subarray(5120).every((x) => x === 1)).toBe(true);
      }
    }
    expect(garbage).toBeGreaterThan(50);
    expect(outside).toBeGreaterThan(0);
  });

  it('serves hard links and unlinked open files like a real file system', async () => {
    const fs = await setup();
    const h = await fs.open(`${DIR}/a`, 'createExclusive');
    await h.write([Buffer.from('x')], 0);
    await fs.link(`${DIR}/a`, `${DIR}/b`);
    await fs.unlink(`${DIR}/a`);
    await expect(fs.link(`${DIR}/b`, `${DIR}/b`)).rejects.toMatchObject({ code: 'EEXIST' });
    await expect(fs.open(`${DIR}/a`, 'read')).rejects.toMatchObject({ code: 'ENOENT' });
    await h.write([Buffer.from('y')], 1);
    expect((await readAll(fs, `${DIR}/b`))?.toString()).toBe('xy');
    expect(await fs.readdir(DIR)).toEqual(['b']);
  });
});

describe('the crash checker fails a chain that skips durability', () => {
  for (const what of ['datasync', 'syncDir'] as const) {
    it(`finds lost acknowledged data when every ${what} is ignored`, async () => {
      const figures = new Figures('self-test');
      let found = 0;
      for (const w of chainWorkloads().slice(0, 3)) {
        const rec = await recordWorkload(w, { wrap: (fs) => lyingFs(fs, what) });
        await explore(w, rec, exhaustiveCases(rec), figures, { kind: 'exhaustive' });
        await explore(w, rec, randomCases(rec, new Rng(1), 30), figures, { kind: 'random' });
        found += figures.failures.length;
      }
      expect(found).toBeGreaterThan(0);
    });
  }
});
