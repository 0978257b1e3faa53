/**
 * `prune`: reclaims exactly the data no backup references; never deletes a chunk a
 * backup that was running when it planned (or one started since) needs; and can be
 * stopped at any step and finished by the next run.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { backup, checkRepository, forget, NodeFileSystem, prune, Repository, repositoryStats, restore, type FileHandle, type OpenMode, type PruneProgress } from '../../lib/index.js';
import { randomData, snapshotTree, withRepo, writeTree } from '../helpers/repo.js';
import { tempDir } from '../helpers/temp-dir.js';

let dir: string;
let cleanup: () => void;
let repoDir: string;

beforeEach(async () => {
  ({ dir, cleanup } = tempDir('deltadisk-prune-'));
  repoDir = path.join(dir, 'repo');
  await Repository.init(repoDir, { packSize: 1 << 20, cdc: { min: 16 * 1024, avg: 64 * 1024, max: 256 * 1024 } });
});
afterEach(() => cleanup());

const src = (): string => path.join(dir, 'src');
const run = <T>(lock: 'shared' | 'maintenance', fn: (r: Repository) => Promise<T>): Promise<T> => withRepo(repoDir, lock, fn);

async function cleanCheck(): Promise<void> {
  const r = await run('shared', (repo) => checkRepository(repo, { readData: true }));
  expect(r.errors).toEqual([]);
  expect(r.leaks).toEqual([]);
}

async function restoresAs(id: string, tree: Record<string, string>): Promise<void> {
  const out = path.join(dir, `out-${id}-${Math.random()}`);
  await run('shared', (repo) => restore(repo, id, { target: out, verify: true }));
  expect(snapshotTree(path.join(out, 'src'))).toEqual(tree);
}

/** Reads through the real file system, holding reads of one file until released. */
class GateFs extends NodeFileSystem {
  #open: Promise<void>;
  release!: () => void;
  reached!: Promise<void>;
  #reachedResolve!: () => void;
  constructor(readonly gated: string) {
    super();
    this.#open = new Promise((r) => (this.release = r));
    this.reached = new Promise((r) => (this.#reachedResolve = r));
  }
  override async open(p: string, mode: OpenMode): Promise<FileHandle> {
    const h = await super.open(p, mode);
    if (p !== this.gated) return h;
    const read = h.read.bind(h);
    h.read = async (...args) => {
      this.#reachedResolve();
      await this.#open;
      return read(...args);
    };
    return h;
  }
}

describe('prune', () => {
  it('reclaims exactly the data of forgotten backups, repacking what is partly used', async () => {
    const shared = randomData(700_000);
    writeTree(src(), { keep: shared, gone: randomData(900_000) });
    const a = await run('shared', (repo) => backup(repo, [src()]));
    fs.unlinkSync(path.join(src(), 'gone'));
    writeTree(src(), { fresh: randomData(300_000) });
    const b = await run('shared', (repo) => backup(repo, [src()]));
    const tree = snapshotTree(src());
    const before = await run('shared', (repo) => repositoryStats(repo));
    await run('maintenance', (repo) => forget(repo, { keepLast: 1 }));
    const r = await run('maintenance', (repo) => prune(repo, { repackThreshold: 1e-9 }));
    expect(r.completed).toBe(true);
    expect(r.packsDeleted).toBeGreaterThan(0);
    const after = await run('shared', (repo) => repositoryStats(repo));
    expect(after.unreferencedBytes).toBe(0);
    expect(after.uniqueBytes).toBe(before.uniqueBytes - 900_000);
    expect(after.packBytes! - after.storedBytes).toBeLessThan(after.packs! * 2048); // only headers beyond the data
    expect(fs.readdirSync(path.join(repoDir, 'plans'))).toEqual([]);
    await cleanCheck();
    await restoresAs(b.id, tree);
    await expect(run('shared', (repo) => repo.loadManifest(a.id))).rejects.toMatchObject({ code: 'BACKUP_NOT_FOUND' });
    // Nothing left to do: a second prune changes nothing.
    const again = await run('maintenance', (repo) => prune(repo, { repackThreshold: 1e-9 }));
    expect(again).toMatchObject({ packsDeleted: 0, packsRepacked: 0, bytesAfter: again.bytesBefore });
  });

  it('leaves a truncated pack still in use as it is, and prunes the rest', async () => {
    writeTree(src(), { a: randomData(300_000), b: randomData(300_000) });
    await run('shared', (repo) => backup(repo, [src()]));
    fs.unlinkSync(path.join(src(), 'b'));
    await run('shared', (repo) => backup(repo, [src()]));
    await run('maintenance', (repo) => forget(repo, { keepLast: 1 }));
    const packs = fs.readdirSync(path.join(repoDir, 'packs')).flatMap((s) => fs.readdirSync(path.join(repoDir, 'packs', s)).map((n) => path.join(repoDir, 'packs', s, n)));
    expect(packs).toHaveLength(1); // a and b in one pack, b's part now unused: a repack candidate
    fs.truncateSync(packs[0]!, 100_000);
    const notes: string[] = [];
    const r = await run('maintenance', (repo) => prune(repo, { repackThreshold: 0.1, onNote: (n) => notes.push(n) }));
    expect(r.completed).toBe(true);
    expect(r.packsRepacked).toBe(0);
    expect(notes.some((n) => n.startsWith('not repacking pack'))).toBe(true);
    expect(fs.existsSync(packs[0]!)).toBe(true);
    const c = await run('shared', (repo) => checkRepository(repo));
    expect(c.errors.length).toBeGreaterThan(0);
  });

  it('check reports a damaged prune plan, and prune replaces it', async () => {
    for (const work of ['nothing to delete', 'a forgotten backup to delete']) {
      fs.rmSync(src(), { recursive: true, force: true });
      writeTree(src(), { f: randomData(200_000), ...(work === 'nothing to delete' ? {} : { gone: randomData(1_500_000) }) });
      await run('shared', (repo) => backup(repo, [src()]));
      if (work !== 'nothing to delete') {
        fs.unlinkSync(path.join(src(), 'gone'));
        await run('shared', (repo) => backup(repo, [src()]));
        await run('maintenance', (repo) => forget(repo, { keepLast: 1 }));
      }
      await damagedPlanIsReplaced(work);
    }
  });

  async function damagedPlanIsReplaced(work: string): Promise<void> {
    const a = (await run('shared', (repo) => repo.resolveBackup('latest')));
    fs.writeFileSync(path.join(repoDir, 'plans', 'prune'), Buffer.from('DDPP\r\n\x1a\ngarbage'));
    const c = await run('shared', (repo) => checkRepository(repo));
    expect(c.errors.map((e) => e.kind), work).toEqual(['damaged-plan']);
    const notes: string[] = [];
    const r = await run('maintenance', (repo) => prune(repo, { onNote: (n) => notes.push(n) }));
    expect(r.completed).toBe(true);
    expect(notes.some((n) => n.startsWith('replacing a damaged prune plan')), work).toBe(true);
    expect(fs.readdirSync(path.join(repoDir, 'plans')), work).toEqual([]);
    if (work !== 'nothing to delete') expect(r.packsDeleted + r.packsRepacked, work).toBeGreaterThan(0);
    await cleanCheck();
    await restoresAs(a, snapshotTree(src()));
  }

  it('reports in a dry run what it would delete, and deletes nothing', async () => {
    writeTree(src(), { f: randomData(500_000) });
    await run('shared', (repo) => backup(repo, [src()]));
    await run('maintenance', (repo) => forget(repo, { keepLast: 1, keepTags: ['none'] }));
    fs.unlinkSync(path.join(repoDir, 'snapshots', fs.readdirSync(path.join(repoDir, 'snapshots'))[0]!));
    const packs = fs.readdirSync(path.join(repoDir, 'packs')).flatMap((s) => fs.readdirSync(path.join(repoDir, 'packs', s)));
    const r = await withRepo(repoDir, false, (repo) => prune(repo, { dryRun: true }));
    expect(r.packsDeleted).toBe(packs.length);
    expect(fs.readdirSync(path.join(repoDir, 'packs')).flatMap((s) => fs.readdirSync(path.join(repoDir, 'packs', s)))).toEqual(packs);
  });

  it('waits for operations that started before its plan, and backups started after it store condemned chunks again', async () => {
    const data = randomData(800_000);
    writeTree(src(), { f: data });
    const old = await run('shared', (repo) => backup(repo, [src()]));
    await run('maintenance', (repo) => forget(repo, { keepLast: 1, keepTags: ['x'] }));
    fs.unlinkSync(path.join(repoDir, 'snapshots', old.id));
    const holder = await Repository.open(repoDir, { lock: 'shared', purpose: 'a restore that started earlier' });
    const deferred = await run('maintenance', (repo) => prune(repo, { maxWaitMs: 300, pollMs: 50 }));
    expect(deferred.completed).toBe(false);
    expect(fs.readdirSync(path.join(repoDir, 'plans'))).toEqual(['prune']);
    // A backup started now must not reuse the condemned chunks: it stores them again.
    const fresh = await run('shared', (repo) => backup(repo, [src()]));
    expect(fresh.summary.bytesNew).toBe(800_000);
    await holder.close();
    const done = await run('maintenance', (repo) => prune(repo, { pollMs: 50 }));
    expect(done.completed).toBe(true);
    expect(done.packsDeleted).toBeGreaterThan(0);
    expect(fs.readdirSync(path.join(repoDir, 'plans'))).toEqual([]);
    await cleanCheck();
    await restoresAs(fresh.id, snapshotTree(src()));
  });

  it('spares condemned packs that a backup running during the plan reused', async () => {
    const data = randomData(800_000);
    writeTree(src(), { f: data });
    const old = await run('shared', (repo) => backup(repo, [src()]));
    fs.unlinkSync(path.join(repoDir, 'snapshots', old.id));
    // A backup of the same data starts, loads the index (the old chunks are there) and stalls reading.
    const gate = new GateFs(path.join(src(), 'f'));
    const repo = await Repository.open(repoDir, { lock: 'shared', purpose: 'backup' });
    const running = backup(repo, [src()], { sourceFs: gate });
    await gate.reached;
    const deferred = await run('maintenance', (r) => prune(r, { maxWaitMs: 200, pollMs: 50 }));
    expect(deferred.completed).toBe(false);
    gate.release();
    const b = await running;
    await repo.close();
    expect(b.summary.chunksNew).toBe(0); // it deduplicated against the condemned packs
    const done = await run('maintenance', (r) => prune(r, { pollMs: 50 }));
    expect(done.completed).toBe(true);
    expect(done.packsSpared).toBeGreaterThan(0);
    await cleanCheck();
    await restoresAs(b.id, snapshotTree(src()));
  });

  /** Two backups, the first forgotten: a prune has packs to repack and to delete. */
  async function forgottenOne(): Promise<{ kept: string; tree: Record<string, string> }> {
    writeTree(src(), { a: randomData(400_000), b: randomData(400_000) });
    await run('shared', (repo) => backup(repo, [src()]));
    fs.unlinkSync(path.join(src(), 'a'));
    const kept = await run('shared', (repo) => backup(repo, [src()]));
    await run('maintenance', (repo) => forget(repo, { keepLast: 1 }));
    return { kept: kept.id, tree: snapshotTree(src()) };
  }
  /** A prune whose signal is aborted at its first step named `at`. */
  const pruneAbortedAt = (at: string): Promise<unknown> => {
    const ac = new AbortController();
    return run('maintenance', (repo) => prune(repo, { repackThreshold: 1e-9, signal: ac.signal, onStep: (s) => (s === at ? ac.abort() : undefined) }));
  };
  const repoFiles = (): string[] => fs.readdirSync(repoDir, { recursive: true, withFileTypes: true }).filter((e) => e.isFile() && !e.parentPath.includes('locks')).map((e) => path.join(e.parentPath, e.name)).sort();

  it('reports its progress: the packs looked at for repacking, then the condemned packs deleted', async () => {
    await forgottenOne();
    const seen: PruneProgress[] = [];
    const r = await run('maintenance', (repo) => prune(repo, { repackThreshold: 1e-9, onProgress: (p) => seen.push(p) }));
    expect(r.packsDeleted).toBeGreaterThan(0);
    const phases = [...new Set(seen.map((p) => p.phase))];
    expect(phases).toEqual(['repack', 'delete']);
    for (const phase of phases) {
      const of = seen.filter((p) => p.phase === phase);
      expect(new Set(of.map((p) => p.total)).size).toBe(1);
      of.forEach((p, i) => expect(p.done).toBeGreaterThanOrEqual(i === 0 ? 0 : of[i - 1]!.done));
      expect(of.at(-1)!.done).toBe(of[0]!.total);
    }
    expect(seen.find((p) => p.phase === 'repack')!.total).toBe(r.bytesBefore);
    expect(seen.find((p) => p.phase === 'delete')!.total).toBe(r.bytesDeleted);
  });

  it('stops when aborted before its plan, having changed nothing and left no temporary file', async () => {
    const { kept, tree } = await forgottenOne();
    const before = repoFiles();
    // At 'repack' the used blobs are copied into new packs, not yet flushed.
    await expect(pruneAbortedAt('repack')).rejects.toMatchObject({ code: 'INTERRUPTED', message: expect.stringMatching(/before it deleted anything/) });
    expect(repoFiles()).toEqual(before);
    await restoresAs(kept, tree);
  });

  it('stops when aborted after its plan, and the next prune finishes it', async () => {
    const { kept, tree } = await forgottenOne();
    // The index is rewritten by then, the condemned pack not yet deleted.
    await expect(pruneAbortedAt('delete-pack')).rejects.toMatchObject({ code: 'INTERRUPTED', message: expect.stringMatching(/plan stays/) });
    expect(fs.readdirSync(path.join(repoDir, 'plans'))).toEqual(['prune']);
    const mid = await run('shared', (repo) => checkRepository(repo, { readData: true }));
    expect(mid.errors).toEqual([]);
    const r = await run('maintenance', (repo) => prune(repo, { repackThreshold: 1e-9 }));
    expect(r.completed).toBe(true);
    expect(fs.readdirSync(path.join(repoDir, 'plans'))).toEqual([]);
    await cleanCheck();
    await restoresAs(kept, tree);
  });

  it('stops waiting for earlier operations as soon as it is aborted', async () => {
    await forgottenOne();
    const holder = await Repository.open(repoDir, { lock: 'shared', purpose: 'a restore that started earlier' });
    try {
      const ac = new AbortController();
      const notes: string[] = [];
      const t0 = Date.now();
      const pruning = run('maintenance', (repo) => prune(repo, { maxWaitMs: 60_000, pollMs: 30_000, signal: ac.signal, onNote: (n) => notes.push(n) }));
      await expect.poll(() => notes.some((n) => n.startsWith('waiting for')), { timeout: 10_000 }).toBe(true);
      ac.abort();
      await expect(pruning).rejects.toMatchObject({ code: 'INTERRUPTED' });
      expect(Date.now() - t0).toBeLessThan(20_000); // not the 30 s poll
      expect(fs.readdirSync(path.join(repoDir, 'plans'))).toEqual(['prune']);
    } finally {
      await holder.close();
    }
    const r = await run('maintenance', (repo) => prune(repo, { pollMs: 50 }));
    expect(r.completed).toBe(true);
    await cleanCheck();
  });

  for (const step of ['repack', 'write-plan', 'wait', 'recheck', 'write-index', 'delete', 'delete-pack', 'remove-plan']) {
    it(`finishes on the next run after stopping at ${step}`, async () => {
      writeTree(src(), { a: randomData(400_000), b: randomData(400_000) });
      await run('shared', (repo) => backup(repo, [src()]));
      fs.unlinkSync(path.join(src(), 'a'));
      const kept = await run('shared', (repo) => backup(repo, [src()]));
      await run('maintenance', (repo) => forget(repo, { keepLast: 1 }));
      const tree = snapshotTree(src());
      let hit = false;
      await expect(
        run('maintenance', (repo) =>
          prune(repo, {
            repackThreshold: 1e-9,
            onStep: (s) => {
              if (s === step && !hit) {
                hit = true;
                throw new Error(`stopped at ${s}`);
              }
            },
          }),
        ),
      ).rejects.toThrow(`stopped at ${step}`);
      // Stopped midway: every backup still restores; the repository is clean or has leaks only.
      const mid = await run('shared', (repo) => checkRepository(repo, { readData: true }));
      expect(mid.errors).toEqual([]);
      await restoresAs(kept.id, tree);
      const r = await run('maintenance', (repo) => prune(repo, { repackThreshold: 1e-9 }));
      expect(r.completed).toBe(true);
      await cleanCheck();
      await restoresAs(kept.id, tree);
    });
  }
});
