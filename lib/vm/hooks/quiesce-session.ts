/**
 * A freeze/thaw cycle over a hook plan, with VMware Tools' semantics and one
 * guarantee on top: once freezing has started, every hook that began to freeze gets
 * its thaw (or freezeFail), whatever happens in between.
 *
 *  freeze(): runs the units' freeze hooks in order. When one fails, the units that
 *    froze before it get `freezeFail` in reverse order; the failing hook itself is
 *    not called again when it failed on its own (VMware), but is when deltadisk
 *    killed it (timeout, interruption), since it had no chance to undo what it began.
 *    Then: interrupted → INTERRUPTED; `required` → HOOK_FAILED; `optional` → the
 *    session continues unquiesced (crash-consistent) and says so.
 *  thaw(): runs the thaw hooks of every frozen unit in reverse order (freezeFail
 *    instead, should freeze() have stopped half-way without its own cleanup). It ignores the
 *    abort signal (thaw hooks always run to completion, each within its timeout),
 *    never throws, runs once, and records failures (`thawFailed`).
 * Use as `try { await s.freeze(); … } finally { await s.thaw(); }`; `withQuiesce`
 * does exactly that.
 */
import { DeltaDiskError } from '../../errors.js';
import type { HookPlan, HookUnit } from './hook-plan.js';
import { runHook, type HookOutcome, type HookPhase } from './run-hook.js';

/** What the hooks are told about the operation (as DELTADISK_* environment variables). */
export interface HookEnvironment {
  readonly vmDir: string;
  readonly vmx: string;
  readonly vmName: string;
  /** The backup's id (or the id of the VM snapshot operation). */
  readonly backupId: string;
  /** `backup`, `snapshot`, `capture`. */
  readonly operation: string;
}

export interface HookLogEntry {
  readonly time: string;
  readonly hook: string;
  readonly phase: HookPhase;
  readonly stream: 'stdout' | 'stderr';
  readonly text: string;
}

export interface SessionOptions {
  readonly signal?: AbortSignal;
  readonly onLog?: (entry: HookLogEntry) => void;
  /** For tests: how long a killed hook gets between SIGTERM and SIGKILL. */
  readonly killGraceMs?: number;
}

export type SessionState = 'idle' | 'freezing' | 'frozen' | 'unquiesced' | 'thawed';

export const MAX_LOG_BYTES = 1024 * 1024;

export class QuiesceSession {
  readonly plan: HookPlan;
  readonly outcomes: HookOutcome[] = [];
  /** Hook output in arrival order, at most 1 MiB in all (then `logTruncated`). */
  readonly log: HookLogEntry[] = [];
  logTruncated = false;
  #logBytes = 0;
  #state: SessionState = 'idle';
  #frozen: HookUnit[] = [];
  /** Values come from VM metadata (displayName…); runHook makes them safe for an environment (NUL). */
  readonly #env: Record<string, string>;
  readonly #o: SessionOptions;
  /** When the last freeze hook finished (performance.now()), or undefined. */
  frozenAt: number | undefined;
  failure: string | undefined;

  constructor(plan: HookPlan, env: HookEnvironment, o: SessionOptions = {}) {
    this.plan = plan;
    this.#o = o;
    this.#env = {
      DELTADISK_VM_DIR: env.vmDir,
      DELTADISK_VMX: env.vmx,
      DELTADISK_VM_NAME: env.vmName,
      DELTADISK_BACKUP_ID: env.backupId,
      DELTADISK_OPERATION: env.operation,
      DELTADISK_HOOK_TIMEOUT: String(Math.ceil(plan.timeoutMs / 1000)),
    };
  }

  get state(): SessionState {
    return this.#state;
  }

  /** True after a successful freeze with at least one hook. */
  get quiesced(): boolean {
    return (this.#state === 'frozen' || this.#state === 'thawed') && this.failure === undefined && this.plan.units.length > 0;
  }

  get thawFailed(): boolean {
    return this.outcomes.some((o) => o.phase === 'thaw' && !o.ok);
  }

  /**
   * @returns true when quiesced, false when continuing unquiesced (optional mode)
   * @throws HOOK_FAILED (required mode), INTERRUPTED; freezeFail hooks have run by then
   */
  async freeze(): Promise<boolean> {
    if (this.#state !== 'idle') throw new DeltaDiskError('INVALID_ARGUMENT', 'freeze() runs once per session');
    this.#state = 'freezing';
    for (const unit of this.plan.units) {
      if (this.#o.signal?.aborted === true) return this.#failed(undefined, 'interrupted before all freeze hooks ran');
      if (unit.freeze === undefined) {
        this.#frozen.push(unit);
        continue;
      }
      const outcome = await this.#run(unit, 'freeze', true);
      if (outcome.ok) {
        this.#frozen.push(unit);
        continue;
      }
      if (outcome.timedOut || outcome.interrupted) this.#frozen.push(unit);
      const why = outcome.timedOut
        ? `timed out after ${this.plan.timeoutMs} ms`
        : outcome.interrupted
          ? 'was interrupted'
          : outcome.error !== null
            ? `could not start: ${outcome.error}`
            : `exited with ${outcome.exitCode ?? outcome.signal}`;
      return this.#failed(outcome, `freeze hook ${outcome.hook} ${why}`);
    }
    this.#state = 'frozen';
    this.frozenAt = performance.now();
    return true;
  }

  async #failed(outcome: HookOutcome | undefined, why: string): Promise<boolean> {
    this.failure = why;
    const toUndo = this.#frozen.reverse();
    this.#frozen = [];
    for (const unit of toUndo) if (unit.thaw !== undefined) await this.#run(unit, 'freezeFail', false);
    this.#state = 'unquiesced';
    if (outcome === undefined || outcome.interrupted || this.#o.signal?.aborted === true) {
      throw new DeltaDiskError('INTERRUPTED', `interrupted while freezing; the hooks that froze were called with freezeFail`);
    }
    if (this.plan.mode === 'required') throw new DeltaDiskError('HOOK_FAILED', `${why}; the hooks that froze were called with freezeFail`);
    this.frozenAt = performance.now();
    return false;
  }

  /** Runs the thaw hooks of every frozen unit, in reverse order. Never throws; runs once. */
  async thaw(): Promise<void> {
    if (this.#state === 'freezing') {
      // freeze() stopped without finishing its own bookkeeping (it did not return or
      // throw through #failed): the units that froze still get their freezeFail.
      this.#state = 'thawed';
      const units = this.#frozen.reverse();
      this.#frozen = [];
      for (const unit of units) if (unit.thaw !== undefined) await this.#run(unit, 'freezeFail', false).catch(() => undefined);
      return;
    }
    if (this.#state !== 'frozen') {
      if (this.#state === 'idle') this.#state = 'thawed';
      return;
    }
    this.#state = 'thawed';
    const units = this.#frozen.reverse();
    this.#frozen = [];
    for (const unit of units) if (unit.thaw !== undefined) await this.#run(unit, 'thaw', false).catch(() => undefined);
  }

  async #run(unit: HookUnit, phase: HookPhase, abortable: boolean): Promise<HookOutcome> {
    const inv = phase === 'freeze' ? unit.freeze! : unit.thaw!;
    const outcome = await runHook(inv, {
      phase,
      env: this.#env,
      timeoutMs: this.plan.timeoutMs,
      ...(abortable && this.#o.signal !== undefined ? { signal: this.#o.signal } : {}),
      ...(this.#o.killGraceMs === undefined ? {} : { killGraceMs: this.#o.killGraceMs }),
      onOutput: (hook, ph, stream, text) => this.#logLine({ time: new Date().toISOString(), hook, phase: ph, stream, text }),
    });
    this.outcomes.push(outcome);
    return outcome;
  }

  #logLine(e: HookLogEntry): void {
    this.#o.onLog?.(e);
    if (this.#logBytes + e.text.length > MAX_LOG_BYTES) {
      this.logTruncated = true;
      return;
    }
    this.#logBytes += e.text.length;
    this.log.push(e);
  }
}

/**
 * freeze → fn → thaw, with thaw guaranteed once freezing has started. `fn` gets
 * whether the guest is quiesced. An error of `fn` wins over nothing; thaw problems
 * are in `session.outcomes` (and `thawFailed`).
 */
export async function withQuiesce<T>(session: QuiesceSession, fn: (quiesced: boolean) => Promise<T>): Promise<T> {
  try {
    const quiesced = await session.freeze();
    return await fn(quiesced);
  } finally {
    await session.thaw();
  }
}
