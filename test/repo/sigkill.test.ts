/**
 * Process-kill runs of the backup repository (issues 4 and 5): a child process runs
 * a seeded mix of backups, forgets and prunes against a repository on real files
 * (test/harness/repo-sigkill-child.ts) and reports each acknowledged step; the
 * parent SIGKILLs it, then checks the repository with test/harness/repo-checker.ts
 * against the acknowledged history: it opens (taking the dead child's lock over),
 * every acknowledged backup restores byte-identical, the interrupted step is whole
 * or absent, check --read-data has no errors, and running the interrupted step
 * again and a prune leave it clean without leaks.
 *
 * Two kinds of kill: at a random moment, and just before the child's Nth repository
 * file-system call (half of them inside forgets and prunes). SIGKILL keeps the page
 * cache, so this finds state lost between processes and half-done multi-file
 * steps, not missing fsyncs (test/repo/power-loss.test.ts does those). The CLI is
 * killed the same way in test/repo/crash.test.ts.
 *
 * Size: DELTADISK_SIGKILL_RUNS kills of each kind (default 15, of which this file
 * runs half: each repository run costs more than a chain run).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { nodeFileSystem } from '../../lib/io/node-file-system.js';
import { buildHarness } from '../harness/child-build.js';
import { Figures, formatFailures } from '../harness/figures.js';
import { checkedRepoWorkload } from '../harness/repo-checker.js';
import { randomRepoSpec, SOURCE_NAME } from '../harness/repo-workloads.js';
import { Rng, seedFromEnv, sizeFromEnv } from '../harness/rng.js';
import { runChild, type ChildResult } from '../harness/sigkill-runner.js';
import { historyOf } from '../harness/workload.js';

const RUNS = Math.ceil(sizeFromEnv('DELTADISK_SIGKILL_RUNS', 15) / 2);
const STEPS = 8;
const SEED = seedFromEnv();
const figures = new Figures('repository SIGKILL runs');
let child = '';
const root = fs.mkdtempSync(path.join(os.tmpdir(), 'deltadisk-repo-kill-'));

beforeAll(() => {
  child = path.join(buildHarness(), 'repo-sigkill-child.js');
});
afterAll(() => {
  fs.rmSync(root, { recursive: true, force: true });
  console.log(`[deltadisk] repository SIGKILL seed ${SEED} (replay with DELTADISK_SEED=${SEED})`);
  figures.publish();
});

function workload(seed: number, dir: string) {
  return checkedRepoWorkload(randomRepoSpec(seed, STEPS), { source: () => ({ fs: nodeFileSystem, dir: path.join(dir, SOURCE_NAME) }) });
}

function runRepoChild(dir: string, seed: number, killAfterMs: number | undefined, killAtCall?: number): Promise<ChildResult> {
  return runChild(child, [dir, String(seed), String(STEPS), ...(killAtCall === undefined ? [] : [String(killAtCall)])], killAfterMs, 60_000);
}

async function killedRun(seed: number, kill: { readonly afterMs: number } | { readonly atCall: number; readonly inside: string }): Promise<void> {
  const dir = fs.mkdtempSync(path.join(root, 'run-'));
  const w = workload(seed, dir);
  const where = `seed ${seed}, ${'afterMs' in kill ? `killed ${kill.afterMs} ms after start` : `killed before call ${kill.atCall} (inside ${kill.inside})`}`;
  try {
    await w.release(await w.setup({ fs: nodeFileSystem, dir }));
    const r = await runRepoChild(dir, seed, 'afterMs' in kill ? kill.afterMs : undefined, 'atCall' in kill ? kill.atCall : undefined);
    if (r.signal === 'SIGKILL') figures.add(`children killed (${'afterMs' in kill ? 'at a random moment' : 'inside the Nth call'})`);
    else figures.add('children that finished before the kill');
    figures.add('acknowledged operations before the kill', r.acked);
    if (r.signal === 'SIGKILL' && !r.done) figures.add(`kills inside a ${w.spec.steps[r.acked]?.label.split(' ')[0] ?? 'step'}`);
    const v = await w.verify({ fs: nodeFileSystem, dir }, historyOf(w, r.acked, !r.done));
    for (const note of v.notes ?? []) figures.add(`kills after which recovery ${note}`);
  } catch (err) {
    figures.fail(where, err instanceof Error ? err.message : String(err));
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

describe('backup repository under SIGKILL', () => {
  it('kills at random moments', async () => {
    const rng = new Rng(SEED);
    for (let i = 0; i < RUNS; i++) await killedRun((rng.next() * 2 ** 32) >>> 0, { afterMs: rng.int(0, 400) });
    expect(figures.failures, formatFailures(figures.failures)).toEqual([]);
  });

  it('kills just before the Nth file-system call', async () => {
    const rng = new Rng(SEED ^ 0x5bd1e995);
    // A calibration run to the end maps calls to steps (the child is deterministic
    // for a seed, up to lock file names); half the kills land inside forgets and prunes.
    const seed = (rng.next() * 2 ** 32) >>> 0;
    const dir = fs.mkdtempSync(path.join(root, 'count-'));
    const w = workload(seed, dir);
    await w.release(await w.setup({ fs: nodeFileSystem, dir }));
    const full = await runRepoChild(dir, seed, undefined, Number.MAX_SAFE_INTEGER);
    expect(full.done).toBe(true);
    const spans = w.steps.map((s, i) => ({ label: s.label, from: (full.callsAtAck[i - 1] ?? 0) + 1, to: full.callsAtAck[i]! }));
    const maintenance = spans.filter((s) => /^(forget|prune)/.test(s.label) && s.to >= s.from);
    for (let i = 0; i < RUNS; i++) {
      const span = i % 2 === 0 && maintenance.length > 0 ? rng.pick(maintenance) : rng.pick(spans.filter((s) => s.to >= s.from));
      await killedRun(seed, { atCall: rng.int(span.from, span.to), inside: span.label });
    }
    expect(figures.failures, formatFailures(figures.failures)).toEqual([]);
  });
});
