/**
 * Runs a workload once on a CrashFS, then checks the states a power cut could
 * leave at chosen points: every point exhaustively (each recorded operation, with
 * pending operations all kept, all dropped, or kept up to each prefix), and seeded
 * random points with random keep/drop/tear choices in 512 B or 4 KiB sectors.
 *
 * Works for any Workload: the chain's (test/chain) and the repository's (test/repo).
 */
import type { FileSystem } from '../../lib/io/file-system.js';
import { DeltaDiskError } from '../../lib/errors.js';
import { CrashFS, describePolicy, type CrashPolicy } from './crash-fs.js';
import { FaultFS } from './fault-fs.js';
import type { Figures } from './figures.js';
import { Rng } from './rng.js';
import { historyOf, Violation, withTimeout, type History, type Step, type Workload } from './workload.js';

export interface Recording {
  readonly fs: CrashFS;
  readonly dir: string;
  /** Log positions at which each step started and returned. */
  readonly marks: readonly { readonly start: number; readonly end: number }[];
  /** Log length when the last step returned: crash points are 0 … end. */
  readonly end: number;
  /** Files after the whole run (before the system was released). */
  readonly live: ReadonlyMap<string, Uint8Array>;
}

export const CRASH_DIR = '/crash/vm';

export interface RecordOptions {
  readonly dir?: string;
  /**
   * Puts a layer between the workload and the recording file system (a harness
   * self-test uses one that ignores fsync, to prove the checker catches it).
   */
  readonly wrap?: (fs: CrashFS) => FileSystem;
}

export async function recordWorkload<S, M>(w: Workload<S, M>, o: RecordOptions = {}): Promise<Recording> {
  const dir = o.dir ?? CRASH_DIR;
  const fs = new CrashFS();
  await fs.mkdirp(dir);
  const sys = await w.setup({ fs: o.wrap?.(fs) ?? fs, dir });
  fs.checkpoint();
  const marks: { start: number; end: number }[] = [];
  for (const step of w.steps) {
    const start = fs.length;
    await step.run(sys);
    marks.push({ start, end: fs.length });
  }
  // Whatever release writes lies after `end`, outside the explored points.
  const end = fs.length;
  const live = fs.liveFiles();
  await w.release(sys);
  return { fs, dir, marks, end, live };
}

function ackedAt(rec: Recording, point: number): { acked: number; inFlight: boolean } {
  let acked = 0;
  while (acked < rec.marks.length && rec.marks[acked]!.end <= point) acked++;
  return { acked, inFlight: acked < rec.marks.length && rec.marks[acked]!.start < point };
}

function historyKey(rec: Recording, point: number): string {
  const { acked, inFlight } = ackedAt(rec, point);
  return `${acked}/${inFlight}`;
}

/** The history a crash right after `point` recorded operations leaves. */
export function historyAt<S, M>(w: Workload<S, M>, rec: Recording, point: number): History<M> {
  const { acked, inFlight } = ackedAt(rec, point);
  return historyOf(w, acked, inFlight);
}

export interface CrashCase {
  readonly point: number;
  readonly policy: CrashPolicy;
}

/** Every point, with pending operations all kept, all dropped and kept up to each prefix. */
export function* exhaustiveCases(rec: Recording): Generator<CrashCase> {
  for (let point = 0; point <= rec.end; point++) {
    const pending = rec.fs.pendingAt(point).length;
    yield { point, policy: { kind: 'keep-all' } };
    if (pending === 0) continue;
    yield { point, policy: { kind: 'drop-all' } };
    for (let keep = 1; keep < pending; keep++) yield { point, policy: { kind: 'prefix', keep } };
  }
}

/** `n` random points and policies from `rng`; torn writes confined to their bytes unless `tearScope` says otherwise. */
export function* randomCases(rec: Recording, rng: Rng, n: number, tearScope: 'range' | 'sector' = 'range'): Generator<CrashCase> {
  for (let i = 0; i < n; i++) {
    const point = rng.int(0, rec.end);
    const sectorSize = rng.bool() ? 512 : 4096;
    yield {
      point,
      policy: { kind: 'random', seed: (rng.next() * 2 ** 32) >>> 0, sectorSize, tearScope, pKeep: rng.pick([0.2, 0.5, 0.8]), pTear: rng.pick([0.1, 0.3, 0.6]) },
    };
  }
}

export interface ExploreOptions {
  /** Per-state time limit (a hang is a violation). */
  readonly timeoutMs?: number;
  /** Label of the case set in the figures ("exhaustive", "random"). */
  readonly kind: string;
}

/** Checks every case; violations go to `figures`, never thrown. */
export async function explore<S, M>(w: Workload<S, M>, rec: Recording, cases: Iterable<CrashCase>, figures: Figures, o: ExploreOptions): Promise<void> {
  // Checkers only read the models, so states with the same history share them.
  const histories = new Map<string, History<M>>();
  for (const c of cases) {
    const { fs, info } = rec.fs.crashState(c.point, c.policy);
    const probe = historyKey(rec, c.point);
    let history = histories.get(probe);
    if (history === undefined) {
      history = historyAt(w, rec, c.point);
      histories.set(probe, history);
    }
    figures.add(`crash states explored (${o.kind})`);
    figures.add('crash states explored');
    figures.add('pending operations torn', info.torn);
    try {
      const r = await withTimeout(w.verify({ fs, dir: rec.dir }, history), o.timeoutMs ?? 10_000, 'verify');
      if (r.leaks > 0) figures.add('crash states with leftover files (leaks)');
      if (r.checked) figures.add("crash states checked by the library's own check");
      for (const note of r.notes ?? []) figures.add(`crash states where recovery ${note}`);
    } catch (err) {
      const message = err instanceof Violation ? err.message : `unexpected ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`;
      figures.fail(
        `${w.name}: crash after ${describePolicy(c.policy)} at point ${c.point}/${rec.end} (last op ${rec.fs.describeOp(c.point - 1)}; pending ${info.pending}, kept ${info.kept}, dropped ${info.dropped}, torn ${info.torn}); ${history.acked} steps acknowledged${history.inFlight ? `, "${history.inFlight}" in flight` : ''}`,
        message,
      );
    }
  }
}

/**
 * Crashes during recovery: for each case, the state after the crash is opened again
 * on a recording file system (resuming a merge, truncating torn tails, removing
 * leftovers), and that recovery is itself cut at every one of its operations, with
 * pending operations all kept and all dropped. The state after the second crash
 * must satisfy the same history. Cases whose recovery writes nothing are skipped.
 */
export async function exploreRecoveryCrashes<S, M>(w: Workload<S, M>, rec: Recording, cases: Iterable<CrashCase>, figures: Figures): Promise<void> {
  for (const c of cases) {
    const { fs: first } = rec.fs.crashState(c.point, c.policy);
    const history = historyAt(w, rec, c.point);
    let recoveryOps: number;
    try {
      const sys = await w.reopen({ fs: first, dir: rec.dir });
      recoveryOps = first.length;
      await w.release(sys);
    } catch {
      continue; // a state that does not open is reported by explore()
    }
    if (recoveryOps === 0) continue;
    figures.add('recoveries (open and close) that write, crashed at each operation');
    for (let q = 0; q < recoveryOps; q++) {
      for (const policy of [{ kind: 'keep-all' }, { kind: 'drop-all' }] as const) {
        const { fs } = first.crashState(q, policy);
        figures.add('crash states explored (during recovery)');
        figures.add('crash states explored');
        try {
          await withTimeout(w.verify({ fs, dir: rec.dir }, history), 10_000, 'verify');
        } catch (err) {
          const message = err instanceof Violation ? err.message : `unexpected ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`;
          figures.fail(
            `${w.name}: crash after ${describePolicy(c.policy)} at point ${c.point}/${rec.end} (last op ${rec.fs.describeOp(c.point - 1)}), then during recovery after ${describePolicy(policy)} at ${q}/${recoveryOps} (last op ${first.describeOp(q - 1)})`,
            message,
          );
        }
      }
    }
  }
}

/**
 * I/O errors during recovery: for each case (every `stride`-th) whose recovery (open and close) writes,
 * the recovery is run again with EIO at each of its calls in turn. It must end in
 * a typed error (or succeed), and afterwards, with the fault gone, and also after a
 * power cut that drops whatever the failed recovery left pending, the state must
 * satisfy the same history.
 */
export async function exploreRecoveryFaults<S, M>(w: Workload<S, M>, rec: Recording, cases: Iterable<CrashCase>, figures: Figures, stride = 1): Promise<void> {
  let n = 0;
  for (const c of cases) {
    if (n++ % stride !== 0) continue;
    const history = historyAt(w, rec, c.point);
    const probe = rec.fs.crashState(c.point, c.policy).fs;
    const counter = new FaultFS(probe);
    try {
      await w.release(await w.reopen({ fs: counter, dir: rec.dir }));
    } catch {
      continue; // a state that does not open is reported by explore()
    }
    if (probe.length === 0) continue;
    figures.add('recoveries (open and close) that write, failed at each call');
    for (let at = 1; at <= counter.calls; at++) {
      const { fs } = rec.fs.crashState(c.point, c.policy);
      const ffs = new FaultFS(fs);
      ffs.arm({ at, ops: 'any', errno: 'EIO', persistent: false });
      const where = `${w.name}: crash after ${describePolicy(c.policy)} at point ${c.point}/${rec.end}, then EIO at call ${at} of ${counter.calls} of the recovery`;
      figures.add('fault points injected (during recovery)');
      try {
        try {
          await w.release(await withTimeout(w.reopen({ fs: ffs, dir: rec.dir }), 5000, 'recovery'));
        } catch (err) {
          if (err instanceof Violation) throw err;
          if (!(err instanceof DeltaDiskError)) throw new Violation(`recovery failed untyped: ${err instanceof Error ? err.message : String(err)}`);
        }
        ffs.disarm();
        const { fs: cut } = fs.crashState(fs.length, { kind: 'drop-all' });
        await withTimeout(w.verify({ fs: cut, dir: rec.dir }, history), 10_000, 'verify after a failed recovery and a power cut');
        await withTimeout(w.verify({ fs, dir: rec.dir }, history), 10_000, 'verify after a failed recovery');
      } catch (err) {
        figures.fail(where, err instanceof Violation ? err.message : `unexpected ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
      }
    }
  }
}

/**
 * Crashes while the interrupted step runs again ("re-running finishes it"): for each
 * case with a step in flight, the state after the crash is reopened and the step
 * run again on a recording file system; that run must succeed, and is itself cut
 * at up to `points` of its operations (spread evenly, the last included), with
 * pending operations all kept and all dropped. The state after the second crash
 * must satisfy the same history (the checker may finish the step once more).
 */
export async function exploreRerunCrashes<S, M>(w: Workload<S, M>, rec: Recording, cases: Iterable<CrashCase>, figures: Figures, points = 8): Promise<void> {
  for (const c of cases) {
    const history = historyAt(w, rec, c.point);
    const step = history.inFlightStep;
    if (step === undefined) continue;
    const { fs: first } = rec.fs.crashState(c.point, c.policy);
    const where = `${w.name}: crash after ${describePolicy(c.policy)} at point ${c.point}/${rec.end} (last op ${rec.fs.describeOp(c.point - 1)}), "${step.label}" run again`;
    try {
      const sys = await w.reopen({ fs: first, dir: rec.dir });
      try {
        await withTimeout((step as Step<S, M>).run(sys), 10_000, `running "${step.label}" again`);
      } finally {
        await w.release(sys);
      }
    } catch (err) {
      figures.fail(where, `running it again failed: ${err instanceof Error ? err.message : String(err)}`);
      continue;
    }
    const ops = first.length;
    figures.add('interrupted steps run again, crashed while they ran');
    const chosen = new Set<number>();
    for (let i = 1; i <= points; i++) chosen.add(Math.round((i * ops) / points));
    for (const q of [...chosen].sort((a, b) => a - b)) {
      for (const policy of [{ kind: 'keep-all' }, { kind: 'drop-all' }] as const) {
        const { fs } = first.crashState(q, policy);
        figures.add('crash states explored (while the interrupted step ran again)');
        figures.add('crash states explored');
        try {
          await withTimeout(w.verify({ fs, dir: rec.dir }, history), 20_000, 'verify');
        } catch (err) {
          figures.fail(`${where}, crashed again after ${describePolicy(policy)} at ${q}/${ops} (last op ${first.describeOp(q - 1)})`, err instanceof Violation ? err.message : `unexpected ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
        }
      }
    }
  }
}
