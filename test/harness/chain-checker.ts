/**
 * What must hold for a disk after any crash, fault or kill, checked against the
 * history of acknowledged operations (issue 4, "what must hold"):
 *  1. a read-only open works and reads a state the history allows, changing nothing;
 *  2. a writable open works (it resumes an interrupted merge and cleans up), and the
 *     disk reads a state the history allows: every acknowledged write, snapshot and
 *     delete exactly as the model has it; unacknowledged writes wholly old or wholly
 *     new per block, never garbage;
 *  3. the library's check (when it exists) says clean or leaks-only, and clean after
 *     a repair;
 *  4. opening again changes nothing (recovery is idempotent), consolidating changes
 *     no content, running the interrupted operation again finishes it, and the disk
 *     takes and keeps new writes.
 */
import path from 'node:path';
import { Disk } from '../../lib/chain/disk.js';
import { DeltaDiskError, isDeltaDiskError } from '../../lib/errors.js';
import type { Expectation, Observed } from './chain-model.js';
import { mismatch, sameObserved, type ChainModel } from './chain-model.js';
import { runCheck } from './check-adapter.js';
import type { ChainSys } from './chain-steps.js';
import { Violation, type History, type VerifyResult, type WorkloadEnv } from './workload.js';

/** Reads the current state and every snapshot. */
export async function observe(disk: Disk): Promise<Observed> {
  const current = await disk.read(0, disk.virtualSize);
  const snapshots = new Map<string, Uint8Array>();
  for (const s of disk.snapshots()) {
    const reader = await disk.openSnapshot(s.name);
    try {
      snapshots.set(s.name, await reader.read(0, reader.virtualSize));
    } finally {
      await reader.close();
    }
  }
  return { current, snapshots };
}

function describeError(err: unknown): string {
  if (err instanceof DeltaDiskError) return `${err.code}: ${err.message}`;
  return err instanceof Error ? `${err.name}: ${err.message}` : String(err);
}

/** Index of the first expectation `o` satisfies, or a Violation listing why none does. */
function matchAny(o: Observed, exps: readonly Expectation[], what: string, history: History<ChainModel>): number {
  const reasons: string[] = [];
  for (let i = 0; i < exps.length; i++) {
    const why = mismatch(o, exps[i]!);
    if (why === undefined) return i;
    reasons.push(`candidate ${i}: ${why}`);
  }
  throw new Violation(
    `${what}: state not allowed after ${history.acked} acknowledged steps${history.inFlight ? ` with "${history.inFlight}" in flight` : ''}: ${reasons.join('; ')}`,
  );
}

async function openOrViolate(p: string, options: Parameters<typeof Disk.open>[1], what: string): Promise<Disk> {
  try {
    return await Disk.open(p, options);
  } catch (err) {
    throw new Violation(`${what} failed: ${describeError(err)}`);
  }
}

/** Files in the directory that the disk does not name (leftovers; a check would call them leaks). */
async function strayFiles(env: WorkloadEnv, disk: Disk): Promise<string[]> {
  const d = disk.descriptor;
  const known = new Set([path.basename(disk.path), ...d.layers.map((l) => l.file)]);
  if (d.base !== null) known.add(path.basename(d.base.file));
  const names = await env.fs.readdir(env.dir);
  return names.filter((n) => !known.has(n) && !n.endsWith('.lock'));
}

export interface ChainVerifyOptions {
  /** Also check that the disk takes new writes after recovery (default true). */
  readonly probeWrite?: boolean;
}

export async function verifyChain(env: WorkloadEnv, file: string, history: History<ChainModel>, o: ChainVerifyOptions = {}): Promise<VerifyResult> {
  const p = path.join(env.dir, file);
  const options = { fs: env.fs, lock: false };
  const exps = history.candidates.map((m) => m.expectation());

  // 1. Read-only: must open and read an allowed state without changing anything.
  const ro = await openOrViolate(p, { ...options, readOnly: true }, 'read-only open');
  try {
    matchAny(await observe(ro), exps, 'read-only open', history);
  } finally {
    await ro.close();
  }
  const notes: string[] = [];
  if (await env.fs.stat(`${p}.op`).then(() => true, () => false)) notes.push('resumed an interrupted merge');
  // The crashed state as found: `check` may see leaks, never corruption.
  await libraryCheck(p, env.fs, 'before recovery', false);

  // 2 and 3. Writable open (recovery), then the library's own check.
  let disk = await openOrViolate(p, options, 'writable open');
  let first: Observed;
  let leaks: number;
  let checked: boolean;
  try {
    first = await observe(disk);
    matchAny(first, exps, 'after recovery', history);
    leaks = (await strayFiles(env, disk)).length;
  } finally {
    await disk.close();
  }
  // After recovery: clean or leaks-only with every block's checksum verified, and
  // clean after a repair.
  checked = await libraryCheck(p, env.fs, 'after recovery', true);

  // 4. Idempotent recovery, content-neutral consolidation, a rerun that finishes,
  // and a disk that takes new writes.
  disk = await openOrViolate(p, options, 'second writable open');
  try {
    const changed = sameObserved(first, await observe(disk));
    if (changed !== undefined) throw new Violation(`opening again changed the disk: ${changed}`);
    try {
      await disk.consolidate();
    } catch (err) {
      throw new Violation(`consolidate after recovery failed: ${describeError(err)}`);
    }
    let base = await observe(disk);
    const moved = sameObserved(first, base);
    if (moved !== undefined) throw new Violation(`consolidate after recovery changed content: ${moved}`);
    if (history.inFlightStep !== undefined && history.inFlight !== 'reopen') {
      await rerun(disk, p, history);
      notes.push('ran the interrupted operation again');
      base = await observe(disk);
    }
    if (o.probeWrite ?? true) disk = await probeWrite(disk, p, options, base);
  } finally {
    await disk.close();
  }
  return { leaks, checked, notes };
}

/**
 * Runs `Disk.check` on the files at `p`: clean or leaks-only, never corrupt; with
 * `repair`, leaks are repaired and a second check must be clean.
 */
async function libraryCheck(p: string, fs: WorkloadEnv['fs'], when: string, repair: boolean): Promise<boolean> {
  const c = await runCheck(p, fs, { readData: repair });
  if (c.verdict === 'corrupt') throw new Violation(`check reports corruption ${when}: ${JSON.stringify(c.raw)}`);
  if (repair && c.verdict === 'leaks') {
    const repaired = await runCheck(p, fs, { repair: true });
    const after = await runCheck(p, fs, {});
    if (after.verdict !== 'clean') throw new Violation(`check --repair ${when} left ${after.verdict}: ${JSON.stringify(repaired.raw)}`);
  }
  return true;
}

/** Writes and flushes a block, reopens, and checks it is there and nothing else moved; returns the reopened disk. */
async function probeWrite(disk: Disk, p: string, options: { fs: WorkloadEnv['fs']; lock: boolean }, base: Observed): Promise<Disk> {
  const probe = new Uint8Array(Math.min(disk.blockSize, disk.virtualSize)).fill(0xa5);
  await disk.write(0, probe);
  await disk.flush();
  await disk.close();
  const again = await openOrViolate(p, options, 'open after a probe write');
  const expected = Uint8Array.from(base.current);
  expected.set(probe, 0);
  if (sameObserved({ current: expected, snapshots: base.snapshots }, await observe(again)) !== undefined) {
    await again.close();
    throw new Violation('a write acknowledged after recovery did not survive a reopen, or disturbed other data');
  }
  return again;
}

/**
 * Runs the interrupted step again on the recovered disk: it must finish (or say it
 * already had: SNAPSHOT_EXISTS, SNAPSHOT_NOT_FOUND) and leave the snapshots the
 * completed step leaves.
 */
async function rerun(disk: Disk, p: string, history: History<ChainModel>): Promise<void> {
  const step = history.inFlightStep!;
  const sys: ChainSys = { disk, path: p, options: {} };
  try {
    await step.run(sys);
  } catch (err) {
    if (!isDeltaDiskError(err, 'SNAPSHOT_EXISTS') && !isDeltaDiskError(err, 'SNAPSHOT_NOT_FOUND')) {
      throw new Violation(`running the interrupted "${step.label}" again failed: ${describeError(err)}`);
    }
  }
  const want = [...history.candidates.at(-1)!.expectation().snapshots.keys()].sort().join(', ');
  const got = disk.snapshots().map((s) => s.name).sort().join(', ');
  if (want !== got) throw new Violation(`after running "${step.label}" again the snapshots are [${got}], expected [${want}]`);
  await disk.flush();
}

/** I/O failures must surface as these codes. */
const IO_CODES = new Set(['IO_ERROR', 'NO_SPACE', 'HANDLE_BROKEN']);

/**
 * After a step failed: the error is typed and names an I/O failure, and the disk
 * (if still open) refuses changes with HANDLE_BROKEN until it is reopened.
 */
export async function chainAfterFailure(sys: ChainSys, error: unknown): Promise<void> {
  if (!(error instanceof DeltaDiskError)) throw new Violation(`an injected I/O error surfaced untyped: ${describeError(error)}`);
  if (!IO_CODES.has(error.code)) throw new Violation(`an injected I/O error surfaced as ${error.code}, not an I/O code: ${error.message}`);
  const disk = sys.disk;
  if (disk.closed) return;
  const attempts: [string, () => Promise<unknown>][] = [
    ['write', () => disk.write(0, new Uint8Array(1))],
    ['flush', () => disk.flush()],
    ['snapshot', () => disk.snapshot('after-failure')],
  ];
  for (const [what, fn] of attempts) {
    try {
      await fn();
    } catch (err) {
      if (isDeltaDiskError(err, 'HANDLE_BROKEN')) continue;
      throw new Violation(`after a failed operation, ${what} rejected with ${describeError(err)} instead of HANDLE_BROKEN`);
    }
    throw new Violation(`after a failed operation (${error.code}), ${what} was accepted; the disk must refuse changes until reopened`);
  }
}
