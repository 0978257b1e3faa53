/**
 * What the crash, fault and SIGKILL harnesses run: a workload is a small object
 * (setup, operations, the model they produce, a checker), independent of how it is
 * interrupted. The chain's workloads live in chain-workloads.ts; the backup
 * repository and VM backup add theirs the same way, and every runner
 * (crash-explorer.ts, fault-sweep.ts, the SIGKILL child) works on all of them.
 *
 * Acknowledgement: a step is acknowledged once its `run` resolved. A crash or fault
 * interrupts at most one step (the runners are sequential); the checker is told which
 * steps were acknowledged and which one was in flight, and must accept exactly the
 * states the system promises for that history.
 */
import type { FileSystem } from '../../lib/io/file-system.js';

export interface WorkloadEnv {
  readonly fs: FileSystem;
  /** Absolute directory the workload keeps its files in. */
  readonly dir: string;
}

export interface Step<Sys, Model> {
  readonly label: string;
  /** Runs the operation on the system under test. */
  run(sys: Sys): Promise<void>;
  /** Applies the operation to the model, as if it had been acknowledged. */
  apply(model: Model): void;
  /**
   * For an operation that passes through a visible intermediate state (revert that
   * first keeps the current state as a snapshot): turns the model before it into
   * that state. A crash in flight may leave the system there.
   */
  intermediate?(model: Model): void;
}

/** What the system may legitimately look like after an interruption. */
export interface History<Model> {
  /** Steps acknowledged before the interruption. */
  readonly acked: number;
  /** Label of the step that was in flight, if any. */
  readonly inFlight: string | undefined;
  /**
   * Acceptable models: after the acknowledged steps, then (when a step was in
   * flight) its intermediate state and its completed state.
   */
  readonly candidates: readonly Model[];
  /** The step that was in flight, for checkers that run it again ("rerunning finishes the job"). */
  readonly inFlightStep?: Step<unknown, Model> | undefined;
}

export interface VerifyResult {
  /** Files or blocks nothing references any more (allowed: a later check --repair reclaims them). */
  readonly leaks: number;
  /** True when the library's own consistency check ran (see check-adapter.ts). */
  readonly checked: boolean;
  /** What recovery had to do, for the figures ("resumed an interrupted merge"). */
  readonly notes?: readonly string[];
}

export interface Workload<Sys, Model> {
  readonly name: string;
  /** Creates the initial state in `env.dir` (durable when it resolves) and returns the open system. */
  setup(env: WorkloadEnv): Promise<Sys>;
  /** The model of the state `setup` leaves. */
  initialModel(): Model;
  readonly steps: readonly Step<Sys, Model>[];
  /** Opens the system found in `env.dir` again (as after a restart), without checking it. */
  reopen(env: WorkloadEnv): Promise<Sys>;
  /** Releases the system after a run, ignoring its errors (it may be broken). */
  release(sys: Sys): Promise<void>;
  /**
   * Checks the system after a failed step, before it is released: for example, that
   * it refuses further changes. Throws a Violation.
   */
  afterFailure?(sys: Sys, error: unknown): Promise<void>;
  /**
   * Opens whatever state is in `env.dir` (after a crash, a fault or a kill) and
   * checks it against `history`. Throws a Violation.
   */
  verify(env: WorkloadEnv, history: History<Model>): Promise<VerifyResult>;
}

/** A broken promise of the system under test. */
export class Violation extends Error {
  override readonly name = 'Violation';
}

/** The history after `acked` acknowledged steps, with step `acked` in flight when `inFlight`. */
export function historyOf<Sys, Model>(w: Workload<Sys, Model>, acked: number, inFlight: boolean): History<Model> {
  const replay = (n: number): Model => {
    const m = w.initialModel();
    for (let i = 0; i < n; i++) w.steps[i]!.apply(m);
    return m;
  };
  const candidates = [replay(acked)];
  const step = inFlight ? w.steps[acked] : undefined;
  if (step !== undefined) {
    if (step.intermediate !== undefined) {
      const m = replay(acked);
      step.intermediate(m);
      candidates.push(m);
    }
    candidates.push(replay(acked + 1));
  }
  return { acked, inFlight: step?.label, candidates, inFlightStep: step as Step<unknown, Model> | undefined };
}

/** Rejects with a Violation if `p` does not settle within `ms` (a hang). */
export async function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Violation(`${what} did not finish within ${ms} ms (hang)`)), ms);
  });
  try {
    return await Promise.race([p, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
