/**
 * The backup repository's checker: what must hold after any crash, failed
 * operation or kill (issues 4 and 5), given the steps acknowledged and the one in
 * flight (repo-workloads.ts):
 *
 *  1. the repository opens (with its usual shared lock, taking over dead ones);
 *  2. every backup listed loads, carries one tag the history allows, and restores
 *     byte for byte to the source version its tag names: a backup is there whole or
 *     not at all, never a manifest whose data is missing;
 *  3. every acknowledged backup is listed; no backup a finished forget removed is;
 *     an interrupted forget leaves any subset between its before and after;
 *  4. `checkRepository` with read-data reports no errors (unreferenced packs and
 *     temporary files are leaks, allowed);
 *  5. running the interrupted step again finishes it: the backups are then exactly
 *     those of the history's end (a backup run again may leave the interrupted copy
 *     beside the new one, both whole);
 *  6. a prune then completes, and check with read-data reports neither errors nor
 *     leaks: nothing a surviving backup needs was deleted, nothing left behind.
 *
 * 5 and 6 write to the state they check and cost the most; callers may run them
 * for every n-th state only (`finishEvery`) or not at all (`finish: false`).
 */
import path from 'node:path';
import { isDeltaDiskError } from '../../lib/errors.js';
import type { FileSystem } from '../../lib/io/file-system.js';
import { MemoryFileSystem } from '../../lib/io/memory-file-system.js';
import { checkRepository, type CheckReport } from '../../lib/repo/check.js';
import { prune } from '../../lib/repo/prune.js';
import { Repository } from '../../lib/repo/repository.js';
import { restore } from '../../lib/repo/restore.js';
import { repoWorkload, SOURCE_NAME, sourceVersion, sysFor, versionOfTag, withRepository, type RepoModel, type RepoStep, type RepoSys, type RepoWorkload, type RepoWorkloadSpec, type SourcePlace } from './repo-workloads.js';
import { Violation, type History, type VerifyResult, type WorkloadEnv } from './workload.js';

export interface RepoCheckOptions {
  /** Run the interrupted step again and prune afterwards (default true). */
  readonly finish?: boolean;
  /** With finish, do so for every this-many-th state checked only (default 1: all). */
  readonly finishEvery?: number;
}

function describe(err: unknown): string {
  if (isDeltaDiskError(err)) return `${err.code}: ${err.message}`;
  return err instanceof Error ? `${err.name}: ${err.message}` : String(err);
}

async function must<T>(what: string, p: Promise<T>): Promise<T> {
  try {
    return await p;
  } catch (err) {
    if (err instanceof Violation) throw err;
    throw new Violation(`${what} failed: ${describe(err)}`);
  }
}

async function readAll(fs: FileSystem, p: string): Promise<Uint8Array> {
  const st = await fs.stat(p);
  const out = new Uint8Array(st.size);
  const h = await fs.open(p, 'read');
  try {
    let done = 0;
    while (done < st.size) {
      const n = await h.read(out, done, st.size - done, done);
      if (n === 0) break;
      done += n;
    }
  } finally {
    await h.close();
  }
  return out;
}

async function listFiles(fs: FileSystem, dir: string, rel = ''): Promise<string[]> {
  const out: string[] = [];
  for (const name of await fs.readdir(dir)) {
    const p = path.join(dir, name);
    const r = rel === '' ? name : `${rel}/${name}`;
    if ((await fs.lstat(p)).isDirectory) out.push(...(await listFiles(fs, p, r)));
    else out.push(r);
  }
  return out.sort();
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && Buffer.from(a.buffer, a.byteOffset, a.length).equals(Buffer.from(b.buffer, b.byteOffset, b.length));
}

/** Restores backup `id` into memory and compares it with the source version of its tag. */
export async function restoresExactly(repo: Repository, id: string, tag: string): Promise<void> {
  const want = sourceVersion(versionOfTag(tag));
  const target = new MemoryFileSystem();
  await must(`restoring backup ${id} (${tag})`, restore(repo, id, { target: '/t', fs: target, caseInsensitive: false }));
  const root = `/t/${SOURCE_NAME}`;
  const got = await listFiles(target, root);
  const expected = [...want.keys()].sort();
  if (got.join('\n') !== expected.join('\n')) throw new Violation(`backup ${id} (${tag}) restores files [${got.join(', ')}], expected [${expected.join(', ')}]`);
  for (const [rel, data] of want) {
    if (!sameBytes(await readAll(target, path.join(root, rel)), data)) throw new Violation(`backup ${id} (${tag}): ${rel} does not restore byte-identical to its source`);
  }
}

function errorsOf(report: CheckReport): string {
  return report.errors.map((e) => `${e.kind}: ${e.message}`).join('; ');
}

/** The backups present, by id with their single tag, checked against the allowed tags. */
async function listed(repo: Repository, allowed: ReadonlySet<string>, duplicates: boolean): Promise<{ id: string; tag: string }[]> {
  const damaged: string[] = [];
  const list = await must('listing backups', repo.listBackups((id, err) => damaged.push(`${id}: ${describe(err)}`)));
  if (damaged.length > 0) throw new Violation(`backups that do not load: ${damaged.join('; ')}`);
  const out: { id: string; tag: string }[] = [];
  const seen = new Set<string>();
  for (const b of list) {
    if (b.tags.length !== 1 || !allowed.has(b.tags[0]!)) throw new Violation(`backup ${b.id} has tags [${b.tags.join(', ')}], none the history allows ([${[...allowed].join(', ')}])`);
    const tag = b.tags[0]!;
    if (seen.has(tag) && !duplicates) throw new Violation(`two backups are tagged ${tag}`);
    seen.add(tag);
    out.push({ id: b.id, tag });
  }
  return out;
}

async function checkClean(repo: Repository, what: string, leaksAllowed: boolean): Promise<number> {
  const report = await must(`check --read-data ${what}`, checkRepository(repo, { readData: true, record: false }));
  if (report.errors.length > 0) throw new Violation(`check --read-data ${what} reports errors: ${errorsOf(report)}`);
  if (!leaksAllowed && report.leaks.length > 0) throw new Violation(`check ${what} still reports leaks: ${report.leaks.map((l) => l.message).join('; ')}`);
  return report.leaks.length;
}

/** Checks the repository found in `env` against `history` (see the file comment). */
export async function verifyRepo(env: WorkloadEnv, history: History<RepoModel>, source: () => SourcePlace | undefined, finish = true): Promise<VerifyResult> {
  const sets = history.candidates.map((m) => new Set(m.backups));
  const allowed = new Set(sets.flatMap((s) => [...s]));
  const required = [...sets[0]!].filter((t) => sets.every((s) => s.has(t)));
  const sys = sysFor(env, source());
  const notes: string[] = [];

  const leaks = await must(
    'opening the repository',
    withRepository(sys, 'shared', async (repo) => {
      const present = await listed(repo, allowed, false);
      const tags = new Set(present.map((b) => b.tag));
      const lost = required.filter((t) => !tags.has(t));
      if (lost.length > 0) throw new Violation(`acknowledged backups missing: ${lost.join(', ')} (present: ${[...tags].join(', ') || 'none'})`);
      for (const b of present) await restoresExactly(repo, b.id, b.tag);
      if (history.inFlight !== undefined) {
        const same = (a: ReadonlySet<string>): boolean => a.size === tags.size && [...a].every((t) => tags.has(t));
        const before = sets[0]!;
        const after = sets[sets.length - 1]!;
        if (!same(before)) notes.push(same(after) ? `found "${history.inFlight.split(' ')[0]}" in flight done` : `found "${history.inFlight.split(' ')[0]}" in flight half done`);
      }
      return checkClean(repo, 'after the interruption', true);
    }),
  );
  if (!finish) return { leaks, checked: true, notes };
  const step = history.inFlightStep as RepoStep | undefined;
  notes.push(step === undefined ? 'was followed by a prune, then checked without leaks' : 'ran the interrupted step again and a prune, then checked without leaks');
  if (step !== undefined) {
    await must(`running "${step.label}" again`, step.run(sys));
    const want = new Set(history.candidates[history.candidates.length - 1]!.backups);
    await withRepository(sys, 'shared', async (repo) => {
      const present = await listed(repo, allowed, step.kind === 'backup');
      const tags = new Set(present.map((b) => b.tag));
      if (tags.size !== want.size || [...want].some((t) => !tags.has(t))) {
        throw new Violation(`after running "${step.label}" again the backups are [${[...tags].join(', ')}], expected [${[...want].join(', ')}]`);
      }
      if (step.kind === 'backup') for (const b of present) await restoresExactly(repo, b.id, b.tag);
    });
  }
  await must(
    'pruning afterwards',
    withRepository(sys, 'maintenance', async (repo) => {
      const r = await prune(repo, { repackThreshold: 0.01, maxWaitMs: 10_000, pollMs: 5 });
      if (!r.completed) throw new Violation('prune deferred its deletions although no other operation held a lock');
    }),
  );
  await must(
    'checking after the prune',
    withRepository(sys, 'shared', async (repo) => {
      await checkClean(repo, 'after a prune', false);
      // The newest backup once more, after its packs may have been repacked.
      const present = await listed(repo, allowed, step?.kind === 'backup');
      const last = present[present.length - 1];
      if (last !== undefined) await restoresExactly(repo, last.id, last.tag);
    }),
  );
  return { leaks, checked: true, notes };
}

/** A repository workload with the checker installed. */
export function checkedRepoWorkload(spec: RepoWorkloadSpec, o: { readonly source?: () => SourcePlace; readonly check?: RepoCheckOptions } = {}): RepoWorkload {
  const source = o.source;
  const every = o.check?.finish === false ? 0 : (o.check?.finishEvery ?? 1);
  let n = 0;
  return repoWorkload(spec, {
    source,
    verify: (env, history) => verifyRepo(env, history, () => source?.(), every > 0 && n++ % every === 0),
  });
}

export type { RepoSys };
