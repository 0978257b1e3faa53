/**
 * The backup repository's workloads for the crash, fault and SIGKILL runners
 * (issues 4 and 5): backups of a small source tree, forget and prune, each step
 * opening the repository with the lock it needs and closing it, as the CLI does.
 *
 * The model is the list of backups by tag, in the order they ran. A backup's tag
 * names the source version it captured, and `sourceVersion(n)` is a pure function
 * of n, so whoever checks a repository (repo-checker.ts) knows exactly what every
 * backup it finds must restore to, and a step run again (after a crash, to finish
 * it) backs up the same bytes. Versions share files (deduplication), drop files
 * (forget and prune then leave packs partly used: repacking) and one spills over a
 * pack (two packs committed by one backup).
 */
import path from 'node:path';
import type { FileSystem } from '../../lib/io/file-system.js';
import { MemoryFileSystem } from '../../lib/io/memory-file-system.js';
import { backup } from '../../lib/repo/backup.js';
import { forget } from '../../lib/repo/forget.js';
import { prune } from '../../lib/repo/prune.js';
import { Repository } from '../../lib/repo/repository.js';
import type { LockKind } from '../../lib/format/repo-lock.js';
import { Rng } from './rng.js';
import { Violation, type Step, type Workload, type WorkloadEnv } from './workload.js';

const KiB = 1024;

/** Where the repository lives under a workload's directory. */
export const REPO_NAME = 'repo';
/** The source directory's name (a backup of it restores to `<target>/src`). */
export const SOURCE_NAME = 'src';

export interface RepoSys {
  readonly fs: FileSystem;
  readonly repoDir: string;
  /** The file system and directory the sources are written to and read from. */
  readonly srcFs: FileSystem;
  readonly srcDir: string;
}

export interface RepoModel {
  /** Tags of the backups present, oldest first (tag `v<n>` captured sourceVersion(n)). */
  backups: string[];
}

/** Small, dense chunks so a few hundred KiB make many chunks to deduplicate. */
export const REPO_PARAMS = { packSize: 1 << 20, cdc: { min: 2 * KiB, avg: 8 * KiB, max: 32 * KiB } } as const;

function seeded(label: string, n: number): Uint8Array {
  let h = 2166136261;
  for (let i = 0; i < label.length; i++) h = Math.imul(h ^ label.charCodeAt(i), 16777619);
  return new Rng(h >>> 0).bytes(n);
}

/**
 * The files of source version `n` (relative path → content): a file every version
 * shares, one changing each time, one recurring every other version, an empty file,
 * a small file in a subdirectory, and in version 1 a large file that is dropped
 * again afterwards (its chunks become garbage once version 1 is forgotten).
 */
export function sourceVersion(n: number): Map<string, Uint8Array> {
  const files = new Map<string, Uint8Array>([
    ['stable', seeded('stable', 96 * KiB)],
    ['changing', seeded(`changing-${n}`, 40 * KiB + n * 1000)],
    ['recurring', seeded(`recurring-${n % 2}`, 48 * KiB)],
    ['empty', new Uint8Array(0)],
    ['sub/note', new TextEncoder().encode(`version ${n}\n`)],
  ]);
  if (n === 1) files.set('big', seeded('big', 1100 * KiB));
  if (n % 3 === 2) files.set(`sub/extra-${n}`, seeded(`extra-${n}`, 20 * KiB));
  return files;
}

export function versionOfTag(tag: string): number {
  const m = /^v(\d+)$/.exec(tag);
  if (m === null) throw new Violation(`backup tag ${JSON.stringify(tag)} is none the workload writes`);
  return Number(m[1]);
}

async function removeTree(fs: FileSystem, p: string): Promise<void> {
  const st = await fs.lstat(p).catch(() => undefined);
  if (st === undefined) return;
  if (st.isDirectory) {
    for (const name of await fs.readdir(p)) await removeTree(fs, path.join(p, name));
    await fs.rmdir(p);
  } else {
    await fs.unlink(p);
  }
}

/** Replaces the source directory with version `n`. */
export async function writeSource(fs: FileSystem, dir: string, n: number): Promise<void> {
  await removeTree(fs, dir);
  await fs.mkdir(dir);
  for (const [rel, data] of sourceVersion(n)) {
    const p = path.join(dir, rel);
    if ((await fs.stat(path.dirname(p)).catch(() => undefined)) === undefined) await fs.mkdir(path.dirname(p));
    const h = await fs.open(p, 'createExclusive');
    try {
      if (data.length > 0) await h.write([data], 0);
    } finally {
      await h.close();
    }
  }
}

/** Opens the repository with `lock`, runs `fn`, closes it (an error of `fn` wins over one of close). */
export async function withRepository<T>(sys: RepoSys, lock: LockKind, fn: (r: Repository) => Promise<T>): Promise<T> {
  const repo = await Repository.open(sys.repoDir, { fs: sys.fs, lock, purpose: 'harness' });
  let result: T;
  try {
    result = await fn(repo);
  } catch (err) {
    await repo.close().catch(() => undefined);
    throw err;
  }
  await repo.close();
  return result;
}

export type RepoStep = Step<RepoSys, RepoModel> & { readonly kind: 'backup' | 'forget' | 'prune' };

export function backupStep(n: number): RepoStep {
  const tag = `v${n}`;
  return {
    kind: 'backup',
    label: `backup ${tag}`,
    run: async (sys) => {
      await writeSource(sys.srcFs, sys.srcDir, n);
      await withRepository(sys, 'shared', (r) => backup(r, [sys.srcDir], { tags: [tag], host: 'harness', user: 'harness', sourceFs: sys.srcFs }));
    },
    apply: (m) => {
      m.backups.push(tag);
    },
  };
}

export function forgetStep(keepLast: number): RepoStep {
  return {
    kind: 'forget',
    label: `forget --keep-last ${keepLast}`,
    run: async (sys) => {
      await withRepository(sys, 'maintenance', (r) => forget(r, { keepLast }));
    },
    apply: (m) => {
      m.backups = m.backups.slice(-keepLast);
    },
  };
}

/** Prune, repacking any pack with unused bytes. Nothing else holds a lock, so it must complete. */
export function pruneStep(): RepoStep {
  return {
    kind: 'prune',
    label: 'prune',
    run: async (sys) => {
      const r = await withRepository(sys, 'maintenance', (repo) => prune(repo, { repackThreshold: 0.01, maxWaitMs: 10_000, pollMs: 5 }));
      if (!r.completed) throw new Violation('prune deferred its deletions although no other operation held a lock');
    },
    apply: () => undefined,
  };
}

export interface RepoWorkloadSpec {
  readonly name: string;
  /** Source versions backed up by the setup (durable before the steps run). */
  readonly initial: readonly number[];
  readonly steps: readonly RepoStep[];
}

export interface RepoWorkload extends Workload<RepoSys, RepoModel> {
  readonly spec: RepoWorkloadSpec;
}

/** Where the sources of a run live: a fresh in-memory tree unless a run passes real ones. */
export interface SourcePlace {
  readonly fs: FileSystem;
  readonly dir: string;
}

function memorySource(): SourcePlace {
  return { fs: new MemoryFileSystem(), dir: `/${SOURCE_NAME}` };
}

export function sysFor(env: WorkloadEnv, source: SourcePlace = memorySource()): RepoSys {
  return { fs: env.fs, repoDir: path.join(env.dir, REPO_NAME), srcFs: source.fs, srcDir: source.dir };
}

export interface RepoWorkloadOptions {
  /** The sources' place for each system set up or reopened (default: in memory). */
  readonly source?: (() => SourcePlace) | undefined;
  /** The checker (repo-checker.ts installs it; kept apart to keep this module about workloads). */
  readonly verify: Workload<RepoSys, RepoModel>['verify'];
}

export function repoWorkload(spec: RepoWorkloadSpec, o: RepoWorkloadOptions): RepoWorkload {
  const source = o.source ?? memorySource;
  return {
    name: spec.name,
    spec,
    setup: async (env) => {
      const sys = sysFor(env, source());
      await Repository.init(sys.repoDir, { fs: env.fs, ...REPO_PARAMS });
      for (const n of spec.initial) await backupStep(n).run(sys);
      return sys;
    },
    initialModel: () => ({ backups: spec.initial.map((n) => `v${n}`) }),
    steps: spec.steps,
    reopen: async (env) => sysFor(env, source()),
    release: async () => undefined,
    verify: o.verify,
  };
}

/** The fixed workloads: up to three operations each, explored at every crash point. */
export const REPO_WORKLOAD_SPECS: readonly RepoWorkloadSpec[] = [
  { name: 'two backups (the first spilling over a pack)', initial: [0], steps: [backupStep(1), backupStep(2)] },
  { name: 'forget, then prune (deleting and repacking)', initial: [0, 2, 3], steps: [forgetStep(1), pruneStep()] },
  { name: 'backup, forget, prune', initial: [0, 2], steps: [backupStep(3), forgetStep(2), pruneStep()] },
];

/** A seeded mix of backups, forgets and prunes (`count` steps), for random crash states and SIGKILL runs. */
export function randomRepoSpec(seed: number, count: number): RepoWorkloadSpec {
  const rng = new Rng(seed);
  const steps: RepoStep[] = [];
  let next = 1;
  let present = 1;
  for (let i = 0; i < count; i++) {
    const r = rng.next();
    if (r < 0.6 || present < 2) {
      steps.push(backupStep(next++));
      present++;
    } else if (r < 0.8) {
      const keep = rng.int(1, present - 1);
      steps.push(forgetStep(keep));
      present = keep;
    } else {
      steps.push(pruneStep());
    }
  }
  return { name: `random repository workload (seed ${seed}, ${count} steps)`, initial: [0], steps };
}
