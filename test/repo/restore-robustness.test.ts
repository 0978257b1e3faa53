/**
 * Restore refuses at plan time what it could not finish (name collisions of flattened
 * disks, names too long for their temporary names, inconsistent disks), bounds the
 * work of checking links, reports every failure as a DeltaDiskError, leaves nothing
 * of a failed disk behind, and gives disks their mode and time: each on a crafted
 * repository and a real target directory.
 */
import fs from 'node:fs';
import path from 'node:path';
import { createHash } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Repository, restore, type Entry } from '../../lib/index.js';
import { DeltaDiskError } from '../../lib/errors.js';
import { planRestore } from '../../lib/repo/restore-plan.js';
import { contentOf, craftBackup, type CraftedBlob } from '../helpers/craft.js';
import { withRepo } from '../helpers/repo.js';
import { tempDir } from '../helpers/temp-dir.js';

let dir: string;
let cleanup: () => void;
let repoDir: string;
let target: string;

beforeEach(async () => {
  ({ dir, cleanup } = tempDir('deltadisk-restore-fixes-'));
  repoDir = path.join(dir, 'repo');
  target = path.join(dir, 'target');
  await Repository.init(repoDir);
  fs.mkdirSync(target);
});
afterEach(() => cleanup());

const dirE = (p: string, mode = 0o755, mtimeMs = 0): Entry => ({ type: 'dir', path: p, mode, mtimeMs });
function fileE(p: string, data: string | Buffer): { entry: Entry; blob: CraftedBlob } {
  const { content, blob } = contentOf(Buffer.from(data));
  return { entry: { type: 'file', path: p, mode: 0o644, mtimeMs: 1_600_000_000_000, size: content.size, content }, blob };
}
const linkE = (p: string, t: string): Entry => ({ type: 'symlink', path: p, mode: 0o777, mtimeMs: 0, target: t });
const point = (id: string, name: string, parent: string | null, chunkSize: number, hashes: Buffer) => ({
  id,
  name,
  description: '',
  created: '2020-01-01T00:00:00.000Z',
  parent,
  content: { count: hashes.length / 32, size: 131072, chunkSize, hashes },
});
type Point = ReturnType<typeof point>;
/** A disk of 128 KiB of zeros (two 64 KiB chunks), with optional snapshots. */
const chainE = (p: string, capture: Point = point('c', 'cap', null, 65536, Buffer.alloc(64)), points: Point[] = [], mode = 0o644, mtimeMs = 0): Entry => ({
  type: 'chain',
  path: p,
  mode,
  mtimeMs,
  chain: { diskId: 'x', virtualSize: 131072, blockSize: 65536, dedup: true, base: null, capture, points },
});

async function attempt(entries: Entry[], blobs: CraftedBlob[] = [], options: Record<string, unknown> = {}) {
  return withRepo(repoDir, 'shared', async (repo) => {
    const id = await craftBackup(repo, entries, blobs);
    return restore(repo, id, { target, ...options });
  });
}

async function refusedEmpty(p: Promise<unknown>, code: string, message?: RegExp): Promise<void> {
  const err = await p.then(() => undefined, (e: unknown) => e);
  expect(err).toBeInstanceOf(DeltaDiskError);
  expect(err).toMatchObject({ code });
  if (message !== undefined) expect((err as Error).message).toMatch(message);
  expect(fs.readdirSync(target)).toEqual([]);
}

describe('the name of a flattened disk', () => {
  it('collides with a file of that name at plan time, with or without --overwrite', async () => {
    const r = fileE('disk.raw', 'file content');
    await refusedEmpty(attempt([chainE('disk.chain'), r.entry], [r.blob], { flatten: true }), 'UNSAFE_PATH', /disk\.raw/);
    await refusedEmpty(attempt([r.entry, chainE('disk.chain')], [r.blob], { flatten: true, overwrite: true }), 'UNSAFE_PATH', /flattened/);
  });

  it('collides after case folding on a case-insensitive target, and with a directory', async () => {
    const r = fileE('disk.RAW', 'x');
    expect(() => planRestore([chainE('Disk.chain'), r.entry], { flatten: true, caseInsensitive: true })).toThrow(/collides/);
    expect(() => planRestore([chainE('Disk.chain'), r.entry], { flatten: true })).not.toThrow();
    expect(() => planRestore([dirE('d.raw'), chainE('d.chain')], { flatten: true })).toThrow(/collides/);
  });

  it('does not matter when disks are restored as chains', async () => {
    const r = fileE('disk.raw', 'file content');
    const res = await attempt([chainE('disk.chain'), r.entry], [r.blob]);
    expect(res.summary.chains).toBe(1);
    expect(fs.readFileSync(path.join(target, 'disk.raw'), 'utf8')).toBe('file content');
  });
});

describe('points of one disk', () => {
  it('cut in different chunk sizes are refused as corrupt before anything is written', async () => {
    const data = Buffer.alloc(65536, 0xab);
    const h = createHash('sha256').update(data).digest();
    const blob: CraftedBlob = { hash: h, stored: data, rawLength: 65536 };
    const snap = point('s', 'snap', null, 65536, Buffer.concat([h, Buffer.alloc(32)]));
    const cap = point('c', 'cap', 's', 131072, Buffer.alloc(32));
    await refusedEmpty(attempt([chainE('disk.chain', cap, [snap])], [blob]), 'REPO_CORRUPT', /chunks/);
  });
});

describe('checking links', () => {
  it('takes time linear in the links, not exponential', () => {
    const entries: Entry[] = [linkE('l0', '.')];
    for (let i = 1; i < 11; i++) entries.push(linkE(`l${i}`, Array(6).fill(`l${i - 1}`).join('/')));
    const t0 = performance.now();
    expect(planRestore(entries)).toHaveLength(11);
    expect(performance.now() - t0).toBeLessThan(2000);
  });

  it('still refuses loops, too deep nesting and an escape at the end of a long chain', () => {
    expect(() => planRestore([linkE('a', 'b/x'), linkE('b', 'a/x')])).toThrow(/outside/);
    const deep: Entry[] = [linkE('l0', '.')];
    for (let i = 1; i < 45; i++) deep.push(linkE(`l${i}`, `l${i - 1}`));
    expect(() => planRestore(deep)).toThrow(/outside/);
    const escape: Entry[] = [linkE('l0', '..')];
    for (let i = 1; i < 20; i++) escape.push(linkE(`l${i}`, Array(4).fill(`l${i - 1}`).join('/')));
    expect(() => planRestore(escape.slice(1).concat(escape[0]!))).toThrow(/outside/);
  });

  it('refuses with LIMIT_EXCEEDED links that would take too long to check', () => {
    const entries: Entry[] = [linkE('l0', '.')];
    for (let i = 1; i < 40; i++) entries.push(linkE(`l${i}`, `l${i - 1}/${'a/'.repeat(1000)}`));
    const t0 = performance.now();
    expect(() => planRestore(entries)).toThrow(expect.objectContaining({ code: 'LIMIT_EXCEEDED' }) as unknown as Error);
    expect(performance.now() - t0).toBeLessThan(20_000);
  });
});

describe('long names', () => {
  it('whose temporary name would be too long are refused before the first file is written', async () => {
    const a = fileE('a', 'first');
    const l = fileE('x'.repeat(250), 'long');
    await refusedEmpty(attempt([a.entry, l.entry], [a.blob, l.blob]), 'LIMIT_EXCEEDED', /255/);
    await refusedEmpty(attempt([a.entry, chainE(`${'y'.repeat(240)}.chain`)], [a.blob]), 'LIMIT_EXCEEDED', /255/);
    await refusedEmpty(attempt([a.entry, linkE('z'.repeat(239), 'a')], [a.blob]), 'LIMIT_EXCEEDED');
  });

  it('up to the longest that fits are restored', async () => {
    const f = fileE('x'.repeat(238), 'fits');
    const res = await attempt([f.entry, chainE(`${'y'.repeat(227)}.chain`), linkE('z'.repeat(238), 'x'.repeat(238))], [f.blob]);
    expect(res.summary).toMatchObject({ files: 1, chains: 1, symlinks: 1 });
  });

  it('outside --include do not matter', async () => {
    const a = fileE('a', 'first');
    const l = fileE('x'.repeat(250), 'long');
    const res = await attempt([a.entry, l.entry], [a.blob, l.blob], { include: ['a'] });
    expect(res.summary.files).toBe(1);
  });
});

describe('failures of the file system', () => {
  it('come out as DeltaDiskErrors naming the path (a directory vanished before its mode is set)', async () => {
    const a = fileE('a', 'aaaa');
    let done = false;
    const onProgress = () => {
      if (!done) {
        done = true;
        fs.rmdirSync(path.join(target, 'd'));
      }
    };
    const err = await attempt([dirE('d'), a.entry], [a.blob], { onProgress }).then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(DeltaDiskError);
    expect(err).toMatchObject({ code: 'NOT_FOUND', path: path.join(fs.realpathSync(target), 'd') });
  });
});

describe('a disk that fails to be published', () => {
  it('leaves none of its delta files behind, so the next restore works', async () => {
    let done = false;
    const onProgress = () => {
      if (!done) {
        done = true;
        fs.writeFileSync(path.join(target, 'disk.chain'), 'mine');
      }
    };
    await expect(attempt([chainE('disk.chain')], [], { onProgress })).rejects.toMatchObject({ code: 'ALREADY_EXISTS' });
    expect(fs.readdirSync(target)).toEqual(['disk.chain']);
    expect(fs.readFileSync(path.join(target, 'disk.chain'), 'utf8')).toBe('mine');
    fs.unlinkSync(path.join(target, 'disk.chain'));
    const res = await attempt([chainE('disk.chain')], [], { verify: true });
    expect(res.summary.chains).toBe(1);
  });
});

describe('restored disks', () => {
  it('get the mode and time of the backed-up disk, descriptor and delta files', async () => {
    await attempt([chainE('disk.chain', undefined, [], 0o640, 1_000_000_000_000)], [], { verify: true });
    const names = fs.readdirSync(target).sort();
    expect(names).toContain('disk.chain');
    expect(names.some((n) => n.endsWith('.delta'))).toBe(true);
    for (const n of names) {
      const st = fs.statSync(path.join(target, n));
      expect((st.mode & 0o777).toString(8), n).toBe('640');
      expect(st.mtimeMs, n).toBe(1_000_000_000_000);
    }
  });
});

describe('link resolution on a case-insensitive target', () => {
  const entries = [dirE('d'), linkE('d/L', '..'), linkE('x', 'd/l/..')];

  it('walks through links whose names differ only in case', async () => {
    expect(() => planRestore(entries)).not.toThrow();
    expect(() => planRestore(entries, { caseInsensitive: true })).toThrow(expect.objectContaining({ code: 'UNSAFE_PATH' }) as unknown as Error);
    await refusedEmpty(attempt(entries, [], { caseInsensitive: true }), 'UNSAFE_PATH', /outside/);
  });
});

describe('checking a long chain of links', () => {
  it('refuses it as UNSAFE_PATH, not with a stack overflow', () => {
    const entries: Entry[] = [linkE('l0', '.')];
    for (let i = 1; i < 50_000; i++) entries.push(linkE(`l${i}`, `l${i - 1}`));
    // Last first: resolving l49999 goes through all the others.
    expect(() => planRestore([...entries].reverse())).toThrow(expect.objectContaining({ code: 'UNSAFE_PATH' }) as unknown as Error);
    expect(() => planRestore(entries.slice(0, 41).reverse())).not.toThrow();
    expect(() => planRestore(entries.slice(0, 42))).toThrow(/l41.*outside/);
  });
});
