/**
 * Restore never writes outside its target, never through something it did not
 * create, and never hands out data that does not match its hash: each refusal on a
 * crafted repository, with a sentinel directory beside the target that must stay
 * untouched and a target that must stay empty (or unchanged).
 */
import fs from 'node:fs';
import path from 'node:path';
import { deflateRawSync } from 'node:zlib';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Repository, restore, type Entry } from '../../lib/index.js';
import { Compression } from '../../lib/format/pack-header.js';
import { contentOf, craftBackup, type CraftedBlob } from '../helpers/craft.js';
import { withRepo } from '../helpers/repo.js';
import { tempDir } from '../helpers/temp-dir.js';

let dir: string;
let cleanup: () => void;
let repoDir: string;
let target: string;
let sentinel: string;

beforeEach(async () => {
  ({ dir, cleanup } = tempDir('deltadisk-safety-'));
  repoDir = path.join(dir, 'repo');
  target = path.join(dir, 'target');
  sentinel = path.join(dir, 'sentinel');
  await Repository.init(repoDir);
  fs.mkdirSync(target);
  fs.mkdirSync(sentinel);
  fs.writeFileSync(path.join(sentinel, 'precious'), 'do not touch');
});
afterEach(() => cleanup());

const dirE = (p: string, mode = 0o755): Entry => ({ type: 'dir', path: p, mode, mtimeMs: 0 });
function fileE(p: string, data: string | Buffer, mode = 0o644): { entry: Entry; blob: CraftedBlob } {
  const { content, blob } = contentOf(Buffer.from(data));
  return { entry: { type: 'file', path: p, mode, mtimeMs: 1_600_000_000_000, size: content.size, content }, blob };
}
const linkE = (p: string, t: string): Entry => ({ type: 'symlink', path: p, mode: 0o777, mtimeMs: 0, target: t });

async function attempt(entries: Entry[], blobs: CraftedBlob[] = [], options: { overwrite?: boolean; caseInsensitive?: boolean } = {}) {
  return withRepo(repoDir, 'shared', async (repo) => {
    const id = await craftBackup(repo, entries, blobs);
    return restore(repo, id, { target, ...options });
  });
}

function untouched(): void {
  expect(fs.readdirSync(sentinel)).toEqual(['precious']);
  expect(fs.readFileSync(path.join(sentinel, 'precious'), 'utf8')).toBe('do not touch');
}

async function refused(entries: Entry[], blobs: CraftedBlob[], code: string, message?: RegExp): Promise<void> {
  const p = attempt(entries, blobs);
  await expect(p).rejects.toMatchObject({ code });
  if (message) await expect(p).rejects.toThrow(message);
  untouched();
  expect(fs.readdirSync(target)).toEqual([]);
}

describe('restore refuses', () => {
  it('a name climbing out with ..', async () => {
    const f = fileE('../sentinel/evil', 'x');
    await refused([f.entry], [f.blob], 'UNSAFE_PATH', /climbs out/);
    const g = fileE('a/../../sentinel/evil', 'x');
    await refused([dirE('a'), g.entry], [g.blob], 'UNSAFE_PATH');
  });

  it('absolute names, however many slashes', async () => {
    for (const p of [path.join(sentinel, 'evil'), `////${sentinel.slice(1)}/evil`]) {
      const f = fileE(p, 'x');
      await refused([f.entry], [f.blob], 'UNSAFE_PATH', /absolute/);
    }
  });

  it('backslashes, NUL and control characters in names', async () => {
    for (const p of ['..\\sentinel\\evil', 'a\0b', 'bell\x07']) {
      const f = fileE(p, 'x');
      await refused([f.entry], [f.blob], 'UNSAFE_PATH');
    }
  });

  it('symbolic links leading out, directly or through other links', async () => {
    await refused([linkE('l', '../sentinel/precious')], [], 'UNSAFE_PATH', /outside/);
    await refused([linkE('l', '/etc/passwd')], [], 'UNSAFE_PATH', /absolute/);
    await refused([dirE('d'), linkE('d/up', '..'), linkE('x', 'd/up/..')], [], 'UNSAFE_PATH', /outside/);
  });

  it('writing through a symbolic link of the backup', async () => {
    const f = fileE('l/evil', 'x');
    await refused([dirE('sub'), linkE('l', 'sub'), f.entry], [f.blob], 'UNSAFE_PATH', /symbolic link/);
  });

  it('writing through a symbolic link planted in the target', async () => {
    fs.symlinkSync(sentinel, path.join(target, 'dir'));
    const f = fileE('dir/evil', 'x');
    await expect(attempt([dirE('dir'), f.entry], [f.blob])).rejects.toMatchObject({ code: 'UNSAFE_PATH' });
    untouched();
    expect(fs.readdirSync(target)).toEqual(['dir']);
  });

  it('following a planted symlink at a file name, even with --overwrite', async () => {
    fs.symlinkSync(path.join(sentinel, 'created-through-link'), path.join(target, 'f'));
    const f = fileE('f', 'payload');
    await expect(attempt([f.entry], [f.blob])).rejects.toMatchObject({ code: 'ALREADY_EXISTS' });
    await attempt([f.entry], [f.blob], { overwrite: true });
    untouched();
    expect(fs.lstatSync(path.join(target, 'f')).isSymbolicLink()).toBe(false);
    expect(fs.readFileSync(path.join(target, 'f'), 'utf8')).toBe('payload');
  });

  it('names that collide after Unicode normalization', async () => {
    const a = fileE('caf\u00e9', '1');
    const b = fileE('cafe\u0301', '2');
    await refused([a.entry, b.entry], [a.blob, b.blob], 'UNSAFE_PATH', /Unicode normalization/);
  });

  it('names that differ only in case, on a target that ignores case', async () => {
    const a = fileE('Readme', '1');
    const b = fileE('README', '2');
    await expect(attempt([a.entry, b.entry], [a.blob, b.blob], { caseInsensitive: true })).rejects.toMatchObject({ code: 'UNSAFE_PATH' });
    expect(fs.readdirSync(target)).toEqual([]);
    // On a case-sensitive target they are two files.
    await attempt([a.entry, b.entry], [a.blob, b.blob], { caseInsensitive: false });
    expect(fs.readdirSync(target).sort()).toEqual(['README', 'Readme']);
  });

  it('duplicate entries, missing parents, and over-deep paths', async () => {
    const a = fileE('x', '1');
    await refused([a.entry, a.entry], [a.blob], 'UNSAFE_PATH', /twice/);
    const b = fileE('nodir/f', '1');
    await refused([b.entry], [b.blob], 'UNSAFE_PATH', /directory is not in the backup/);
    const deep = Array.from({ length: 300 }, (_, i) => `d${i}`);
    const dirs = deep.map((_, i) => dirE(deep.slice(0, i + 1).join('/')));
    await refused(dirs, [], 'UNSAFE_PATH', /deeper/);
  });

  it('a file named like the delta of a disk beside it', async () => {
    const d = fileE('disk-000001.delta', 'x');
    const chain: Entry = {
      type: 'chain',
      path: 'disk.chain',
      mode: 0o644,
      mtimeMs: 0,
      chain: { diskId: 'x', virtualSize: 65536, blockSize: 65536, dedup: true, base: null, capture: { id: 'c', name: 'n', description: '', created: 't', parent: null, content: { count: 1, size: 65536, chunkSize: 65536, hashes: Buffer.alloc(32) } }, points: [] },
    };
    await refused([chain, d.entry], [d.blob], 'UNSAFE_PATH', /restores a file of that name/);
  });

  it('creating device nodes and FIFOs (skipped with a warning)', async () => {
    const f = fileE('ok', 'fine');
    const r = await attempt([{ type: 'chardev', path: 'null', mode: 0o666, mtimeMs: 0 }, { type: 'fifo', path: 'pipe', mode: 0o644, mtimeMs: 0 }, f.entry], [f.blob]);
    expect(r.summary.skipped).toBe(2);
    expect(r.warnings.map((w) => w.path)).toEqual([path.join(target, 'null'), path.join(target, 'pipe')]);
    expect(fs.readdirSync(target)).toEqual(['ok']);
  });

  it('overwriting an existing file without --overwrite, before writing anything', async () => {
    fs.writeFileSync(path.join(target, 'b'), 'mine');
    const a = fileE('a', 'new');
    const b = fileE('b', 'theirs');
    await expect(attempt([a.entry, b.entry], [a.blob, b.blob])).rejects.toMatchObject({ code: 'ALREADY_EXISTS' });
    expect(fs.readdirSync(target)).toEqual(['b']);
    expect(fs.readFileSync(path.join(target, 'b'), 'utf8')).toBe('mine');
  });

  it('setuid and setgid bits, restoring the mode without them', async () => {
    const f = fileE('tool', '#!/bin/sh\n', 0o6755);
    await attempt([f.entry], [f.blob]);
    expect(fs.statSync(path.join(target, 'tool')).mode & 0o7777).toBe(0o755);
  });
});

describe('restore verifies data', () => {
  it('refuses a chunk whose content does not match its hash, and publishes nothing', async () => {
    const good = fileE('f', 'the real content');
    const lie: CraftedBlob = { ...good.blob, stored: Buffer.from('something else!!') };
    await refused([good.entry], [lie], 'REPO_CORRUPT', /does not match its hash/);
  });

  it('refuses a compression bomb: inflation is capped at the declared length', async () => {
    const bomb = deflateRawSync(Buffer.alloc(16 << 20));
    const declared = 65536;
    expect(bomb.length).toBeLessThan(declared);
    const entry: Entry = { type: 'file', path: 'bomb', mode: 0o644, mtimeMs: 0, size: declared, content: { count: 1, size: declared, chunkSize: 0, hashes: Buffer.alloc(32, 7) } };
    await refused([entry], [{ hash: Buffer.alloc(32, 7), stored: bomb, rawLength: declared, compression: Compression.DEFLATE }], 'REPO_CORRUPT', /inflates past/);
  });

  it('refuses chunks that do not add up to the declared size (no huge sparse file)', async () => {
    const f = fileE('f', 'ten bytes!');
    const entry: Entry = { ...f.entry, size: 2 ** 40, content: { ...(f.entry as { content: { hashes: Buffer } }).content, count: 1, size: 2 ** 40, chunkSize: 0, hashes: f.blob.hash } } as Entry;
    await expect(attempt([entry], [f.blob])).rejects.toThrow();
    expect(fs.readdirSync(target)).toEqual([]);
  });
});
