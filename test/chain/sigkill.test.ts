/**
 * Process-kill runs (issue 4): a child process runs a random chain workload on real
 * files, holding the real writer lock, and reports each acknowledged operation; the
 * parent SIGKILLs it, then takes the dead child's lock over and checks the disk
 * against the acknowledged history (test/harness/chain-checker.ts).
 *
 * Two kinds of kill: at a random moment, and just before the child's Nth
 * file-system call (every operation boundary and every point inside operations
 * gets hit, spread over the run). SIGKILL keeps the page cache, so this finds
 * in-memory state lost or half-written across files, not missing fsyncs; those are
 * the CrashFS tests' job.
 *
 * Size: DELTADISK_SIGKILL_RUNS kills of each kind (default 15).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Disk } from '../../lib/chain/disk.js';
import { nodeFileSystem } from '../../lib/io/node-file-system.js';
import { buildHarness } from '../harness/child-build.js';
import { DESCRIPTOR, randomChainWorkload } from '../harness/chain-workloads.js';
import { Figures, formatFailures } from '../harness/figures.js';
import { Rng, seedFromEnv, sizeFromEnv } from '../harness/rng.js';
import { runChild, type ChildResult } from '../harness/sigkill-runner.js';
import { historyOf } from '../harness/workload.js';

const RUNS = sizeFromEnv('DELTADISK_SIGKILL_RUNS', 15);
const STEPS = 60;
const SEED = seedFromEnv();
const figures = new Figures('chain SIGKILL runs');
let child = '';
const root = fs.mkdtempSync(path.join(os.tmpdir(), 'deltadisk-kill-'));

beforeAll(() => {
  child = path.join(buildHarness(), 'sigkill-child.js');
});
afterAll(() => {
  fs.rmSync(root, { recursive: true, force: true });
  console.log(`[deltadisk] SIGKILL seed ${SEED} (replay with DELTADISK_SEED=${SEED})`);
  figures.publish();
});

/** Runs the chain child on `descriptor`; see sigkill-runner.ts. */
function runChainChild(descriptor: string, seed: number, killAfterMs: number | undefined, killAtCall?: number): Promise<ChildResult> {
  return runChild(child, [descriptor, String(seed), String(STEPS), ...(killAtCall === undefined ? [] : [String(killAtCall)])], killAfterMs);
}

async function killedRun(seed: number, kill: { readonly afterMs: number } | { readonly atCall: number; readonly inside: string }): Promise<void> {
  const w = randomChainWorkload(seed, STEPS);
  const dir = fs.mkdtempSync(path.join(root, 'run-'));
  const descriptor = path.join(dir, DESCRIPTOR);
  const where = `seed ${seed}, ${'afterMs' in kill ? `killed ${kill.afterMs} ms after start` : `killed before call ${kill.atCall} (inside ${kill.inside})`}`;
  try {
    await w.release(await w.setup({ fs: nodeFileSystem, dir }));
    const r = await runChainChild(descriptor, seed, 'afterMs' in kill ? kill.afterMs : undefined, 'atCall' in kill ? kill.atCall : undefined);
    if (r.signal === 'SIGKILL') figures.add(`children killed (${'afterMs' in kill ? 'at a random moment' : 'inside the Nth call'})`);
    else figures.add('children that finished before the kill');
    figures.add('acknowledged operations before the kill', r.acked);
    if (fs.existsSync(`${descriptor}.op`)) figures.add('kills that interrupted a merge');
    // Check the state as the kill left it (read-only first, so nothing is repaired
    // before it is looked at) …
    const v = await w.verify({ fs: nodeFileSystem, dir }, historyOf(w, r.acked, !r.done));
    for (const note of v.notes ?? []) figures.add(`kills after which recovery ${note}`);
    // … and the dead child's lock is taken over at once by a writable open with the real lock.
    const taken = await Disk.open(descriptor);
    await taken.close();
  } catch (err) {
    figures.fail(where, err instanceof Error ? err.message : String(err));
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

describe('chain under SIGKILL', () => {
  it('kills at random moments', async () => {
    const rng = new Rng(SEED);
    for (let i = 0; i < RUNS; i++) await killedRun((rng.next() * 2 ** 32) >>> 0, { afterMs: rng.int(0, 200) });
    expect(figures.failures, formatFailures(figures.failures)).toEqual([]);
  });

  it('kills just before the Nth file-system call', async () => {
    const rng = new Rng(SEED ^ 0x5bd1e995);
    // A calibration run to the end maps calls to operations (the child is
    // deterministic for a seed); half the kills then land inside snapshot, revert
    // and delete operations, the multi-file ones.
    const seed = (rng.next() * 2 ** 32) >>> 0;
    const w = randomChainWorkload(seed, STEPS);
    const dir = fs.mkdtempSync(path.join(root, 'count-'));
    await w.release(await w.setup({ fs: nodeFileSystem, dir }));
    const full = await runChainChild(path.join(dir, DESCRIPTOR), seed, undefined, Number.MAX_SAFE_INTEGER);
    expect(full.done).toBe(true);
    const spans = w.steps.map((s, i) => ({ label: s.label, from: (full.callsAtAck[i - 1] ?? 0) + 1, to: full.callsAtAck[i]! }));
    const multiFile = spans.filter((s) => /^(snapshot|revert|deleteSnapshot|consolidate)/.test(s.label) && s.to >= s.from);
    for (let i = 0; i < RUNS; i++) {
      const span = i % 2 === 0 && multiFile.length > 0 ? rng.pick(multiFile) : rng.pick(spans.filter((s) => s.to >= s.from));
      await killedRun(seed, { atCall: rng.int(span.from, span.to), inside: span.label });
    }
    expect(figures.failures, formatFailures(figures.failures)).toEqual([]);
  });
});
