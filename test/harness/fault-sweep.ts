/**
 * Runs a workload with an I/O error injected at the Nth call, for every N (after
 * SQLite's do_ioerr_test), and checks what must hold after an operation fails:
 *  - the failing operation rejects with a typed error (the workload's afterFailure
 *    also checks the code and that the system refuses further changes until it is
 *    reopened), and nothing hangs;
 *  - releasing the broken system neither hangs nor throws;
 *  - with a persistent fault still present, reopening ends in a typed error or works;
 *  - once the fault is gone, reopening finds every acknowledged operation intact
 *    (the workload's verify, with the failed operation as the one in flight);
 *  - when the file system underneath is a CrashFS, a power cut right after the
 *    failure (nothing pending kept) must also leave a state verify accepts.
 * Unhandled rejections are counted by the caller (see trackUnhandledRejections).
 */
import { DeltaDiskError } from '../../lib/errors.js';
import type { FileSystem } from '../../lib/io/file-system.js';
import type { CrashFS } from './crash-fs.js';
import { describeRule, FaultFS, type FaultOp, type FaultRule } from './fault-fs.js';
import type { Figures } from './figures.js';
import { historyOf, Violation, withTimeout, type Workload } from './workload.js';

export interface FaultEnv {
  readonly fs: FileSystem;
  readonly dir: string;
  /** Set when `fs` is a CrashFS: the sweep then also checks a power cut after the failure. */
  readonly crash?: CrashFS;
  cleanup(): void;
}

const STEP_TIMEOUT_MS = 5000;

function describeError(err: unknown): string {
  if (err instanceof DeltaDiskError) return `${err.code}: ${err.message}`;
  return err instanceof Error ? `${err.name}: ${err.message}` : String(err);
}

/** Calls of the given kinds the workload's steps make once set up (a dry run). */
export async function countCalls<S, M>(w: Workload<S, M>, makeEnv: () => Promise<FaultEnv>, ops: readonly FaultOp[] | 'any'): Promise<number> {
  const env = await makeEnv();
  try {
    const ffs = new FaultFS(env.fs);
    const sys = await w.setup({ fs: ffs, dir: env.dir });
    ffs.resetCounts();
    for (const step of w.steps) await step.run(sys);
    const n = ffs.callsOf(ops);
    await w.release(sys);
    return n;
  } finally {
    env.cleanup();
  }
}

/** One run with `rule` armed after setup. Violations go to `figures`. */
export async function runWithFault<S, M>(w: Workload<S, M>, makeEnv: () => Promise<FaultEnv>, rule: FaultRule, figures: Figures): Promise<void> {
  const env = await makeEnv();
  const where = `${w.name}: ${describeRule(rule)}`;
  try {
    const ffs = new FaultFS(env.fs);
    const sys = await w.setup({ fs: ffs, dir: env.dir });
    env.crash?.checkpoint();
    ffs.arm(rule);
    figures.add('fault points injected');
    let acked = 0;
    let failure: unknown;
    for (const step of w.steps) {
      try {
        await withTimeout(step.run(sys), STEP_TIMEOUT_MS, step.label);
        acked++;
      } catch (err) {
        if (err instanceof Violation) throw err;
        failure = err;
        break;
      }
    }
    if (failure !== undefined) {
      figures.add('operations that failed with the injected error');
      if (failure instanceof DeltaDiskError) figures.add(`failed with ${failure.code}`);
      await w.afterFailure?.(sys, failure);
    } else if (ffs.injected.length > 0) {
      figures.add('injected errors absorbed without failing an operation');
    }
    await withTimeout(w.release(sys), STEP_TIMEOUT_MS, 'releasing the system');
    const end = env.crash?.length;

    if (rule.persistent && ffs.injected.length > 0) {
      // The fault is still there: reopening must fail cleanly or work.
      try {
        const again = await withTimeout(w.reopen({ fs: ffs, dir: env.dir }), STEP_TIMEOUT_MS, 'reopening with the fault present');
        await withTimeout(w.release(again), STEP_TIMEOUT_MS, 'releasing after reopening');
      } catch (err) {
        if (err instanceof Violation) throw err;
        if (!(err instanceof DeltaDiskError)) throw new Violation(`reopening with a persistent fault failed untyped: ${describeError(err)}`);
      }
    }
    ffs.disarm();

    const history = historyOf(w, acked, failure !== undefined);
    if (env.crash !== undefined && end !== undefined) {
      // Power loss right after the failure: nothing that was pending survives.
      const { fs: crashed } = env.crash.crashState(end, { kind: 'drop-all' });
      await withTimeout(w.verify({ fs: crashed, dir: env.dir }, history), 20_000, 'verify after the failure and a power cut');
      figures.add('fault states also checked after a power cut');
    }
    const v = await withTimeout(w.verify({ fs: env.fs, dir: env.dir }, history), 20_000, 'verify after the failure');
    for (const note of v.notes ?? []) figures.add(`faults after which recovery ${note}`);
  } catch (err) {
    const message = err instanceof Violation ? err.message : `unexpected ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`;
    figures.fail(where, message);
  } finally {
    env.cleanup();
  }
}

/** Unhandled rejections seen while `fn` runs (each one is a violation). */
export async function trackUnhandledRejections<T>(fn: () => Promise<T>, onRejection: (reason: unknown) => void): Promise<T> {
  const listener = (reason: unknown): void => onRejection(reason);
  process.on('unhandledRejection', listener);
  try {
    return await fn();
  } finally {
    // Let pending microtasks and timers surface late rejections before detaching.
    await new Promise((r) => setTimeout(r, 50));
    process.off('unhandledRejection', listener);
  }
}
