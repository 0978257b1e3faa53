/**
 * The repository against a model: random sequences of source changes, backups,
 * forgets, prunes, checks and restores, on the in-memory file system and on real
 * files. The model is the list of backups with the tree each must restore to; after
 * every step the repository must agree (restores byte for byte, check without errors,
 * the backups forget keeps are the newest ones).
 *
 * Size: DELTADISK_PROPERTY_RUNS sequences per case (default 12); FC_SEED replays.
 */
import { createHash } from 'node:crypto';
import path from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { backup, checkRepository, forget, MemoryFileSystem, nodeFileSystem, prune, Repository, restore, type FileSystem, type LockKind } from '../../lib/index.js';
import { propertyRuns, tempDir } from '../helpers/temp-dir.js';

type Tree = Map<string, string>; // relative path → sha256 of the content

interface World {
  readonly fs: FileSystem;
  readonly root: string;
  readonly tree: Tree;
  readonly contents: Map<string, Buffer>;
  backups: { id: string; tree: Tree }[];
  n: number;
}

const POOL = Array.from({ length: 6 }, (_, i) => Buffer.concat(Array.from({ length: 800 }, (_, k) => createHash('sha256').update(`pool${i}:${k}`).digest())).subarray(0, 3000 + i * 4000));

function content(kind: number, salt: number): Buffer {
  // Mostly shared pieces (dedup between files and backups), sometimes unique.
  return kind < 6 ? POOL[kind]! : Buffer.concat([POOL[kind % 6]!, Buffer.from(`unique ${salt}`)]);
}

async function writeFile(fs: FileSystem, p: string, data: Buffer): Promise<void> {
  await fs.unlink(p).catch(() => undefined);
  const h = await fs.open(p, 'createExclusive');
  await h.write([data], 0);
  await h.close();
}

async function readAll(fs: FileSystem, p: string): Promise<Buffer> {
  const h = await fs.open(p, 'read');
  try {
    const size = (await h.stat()).size;
    const b = Buffer.alloc(size);
    let done = 0;
    while (done < size) done += await h.read(b, done, size - done, done);
    return b;
  } finally {
    await h.close();
  }
}

async function listTree(fs: FileSystem, dir: string, rel = ''): Promise<Tree> {
  const out: Tree = new Map();
  for (const name of await fs.readdir(dir)) {
    const p = path.join(dir, name);
    const r = rel === '' ? name : `${rel}/${name}`;
    const st = await fs.lstat(p);
    if (st.isDirectory) for (const [k, v] of await listTree(fs, p, r)) out.set(k, v);
    else out.set(r, createHash('sha256').update(await readAll(fs, p)).digest('hex'));
  }
  return out;
}

async function withRepo<T>(w: World, lock: LockKind | false, fn: (r: Repository) => Promise<T>): Promise<T> {
  const r = await Repository.open(path.join(w.root, 'repo'), { fs: w.fs, lock });
  try {
    return await fn(r);
  } finally {
    await r.close();
  }
}

type Step =
  | { t: 'write'; file: number; kind: number }
  | { t: 'delete'; file: number }
  | { t: 'backup' }
  | { t: 'forget'; keep: number }
  | { t: 'prune'; threshold: number }
  | { t: 'restore'; pick: number }
  | { t: 'check' };

const step: fc.Arbitrary<Step> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ t: fc.constant('write' as const), file: fc.nat(5), kind: fc.nat(9) }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('delete' as const), file: fc.nat(5) }) },
  { weight: 3, arbitrary: fc.constant({ t: 'backup' as const }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('forget' as const), keep: fc.integer({ min: 1, max: 3 }) }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('prune' as const), threshold: fc.constantFrom(0.01, 0.5, 1) }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('restore' as const), pick: fc.nat(20) }) },
  { weight: 1, arbitrary: fc.constant({ t: 'check' as const }) },
);

async function apply(w: World, s: Step): Promise<void> {
  const src = path.join(w.root, 'src');
  const file = (i: number): string => path.join(src, i % 2 === 0 ? `f${i}` : `sub/f${i}`);
  switch (s.t) {
    case 'write': {
      const data = content(s.kind, w.n++);
      await writeFile(w.fs, file(s.file), data);
      w.tree.set(path.relative(src, file(s.file)), createHash('sha256').update(data).digest('hex'));
      return;
    }
    case 'delete':
      await w.fs.unlink(file(s.file)).catch(() => undefined);
      w.tree.delete(path.relative(src, file(s.file)));
      return;
    case 'backup': {
      const r = await withRepo(w, 'shared', (repo) => backup(repo, [src], { sourceFs: w.fs }));
      w.backups.push({ id: r.id, tree: new Map(w.tree) });
      return;
    }
    case 'forget': {
      if (w.backups.length === 0) return;
      const r = await withRepo(w, 'maintenance', (repo) => forget(repo, { keepLast: s.keep }));
      const expected = w.backups.slice(0, Math.max(0, w.backups.length - s.keep)).map((b) => b.id);
      expect(new Set(r.removed)).toEqual(new Set(expected));
      w.backups = w.backups.slice(-s.keep);
      return;
    }
    case 'prune': {
      const r = await withRepo(w, 'maintenance', (repo) => prune(repo, { repackThreshold: s.threshold }));
      expect(r.completed).toBe(true);
      return;
    }
    case 'restore': {
      if (w.backups.length === 0) return;
      const b = w.backups[s.pick % w.backups.length]!;
      const target = path.join(w.root, `out${w.n++}`);
      await withRepo(w, 'shared', (repo) => restore(repo, b.id, { target, fs: w.fs, verify: true }));
      expect(await listTree(w.fs, path.join(target, 'src'))).toEqual(b.tree);
      return;
    }
    case 'check': {
      const r = await withRepo(w, 'shared', (repo) => checkRepository(repo, { readData: true }));
      expect(r.errors).toEqual([]);
      expect(r.failedBackups).toEqual([]);
    }
  }
}

async function world(fs: FileSystem, root: string): Promise<World> {
  if (fs instanceof MemoryFileSystem) await fs.mkdirp(path.join(root, 'src', 'sub'));
  else {
    await fs.mkdir(root);
    await fs.mkdir(path.join(root, 'src'));
    await fs.mkdir(path.join(root, 'src', 'sub'));
  }
  await Repository.init(path.join(root, 'repo'), { fs, packSize: 1 << 20, cdc: { min: 1024, avg: 4096, max: 16384 } });
  return { fs, root, tree: new Map(), contents: new Map(), backups: [], n: 0 };
}

describe('repository against the model', () => {
  for (const memory of [true, false]) {
    it(memory ? 'in-memory file system' : 'real files', async () => {
      const { dir, cleanup } = tempDir('deltadisk-repomodel-');
      let k = 0;
      try {
        await fc.assert(
          fc.asyncProperty(fc.array(step, { minLength: 1, maxLength: 14 }), async (steps) => {
            const fs = memory ? new MemoryFileSystem() : nodeFileSystem;
            const w = await world(fs, path.join(memory ? '/m' : dir, `run${k++}`));
            for (const s of [...steps, { t: 'check' as const }]) await apply(w, s);
            for (let i = 0; i < w.backups.length; i++) await apply(w, { t: 'restore', pick: i });
          }),
          { numRuns: propertyRuns(memory ? 12 : 4) },
        );
      } finally {
        cleanup();
      }
    });
  }
});

describe('counterexamples found by the model', () => {
  it('forget keeps the later of two backups started in the same millisecond', async () => {
    const fs = new MemoryFileSystem();
    const w = await world(fs, '/m/same-ms');
    for (const s of [{ t: 'backup' }, { t: 'backup' }, { t: 'forget', keep: 1 }, { t: 'restore', pick: 0 }] as Step[]) await apply(w, s);
  });
});
