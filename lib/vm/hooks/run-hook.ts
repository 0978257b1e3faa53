/**
 * Runs one hook process and reports how it ended; never throws (the returned promise
 * never rejects). A hook that cannot be started, for whatever reason (ENOENT,
 * EACCES, an argument spawn refuses), is a failed outcome with `error` set, so the
 * caller's freeze/thaw bookkeeping always continues.
 *
 *  - Environment values are data (a VM's displayName): NUL, which no environment
 *    can carry, is replaced by U+FFFD rather than making spawn fail.
 *  - The hook gets its own process group, so a terminal's Ctrl-C reaches deltadisk
 *    only (which then decides what the hooks get), and a timeout or interruption
 *    kills the whole group: SIGTERM, then SIGKILL after a grace period. Background
 *    processes a hook leaves behind on success are left alone (a freeze hook may
 *    keep a lock-holding process until thaw).
 *  - stdout and stderr are captured, bounded: the first and the last 32 KiB are kept.
 *    Each chunk is also passed to `onOutput` as it arrives (for a live log).
 *  - The outcome is final once the process has exited (plus a short drain of its
 *    output); a descendant keeping the pipes open does not hold us up.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import type { HookInvocation } from './hook-plan.js';

export type HookPhase = 'freeze' | 'thaw' | 'freezeFail';

export interface HookOutcome {
  /** `pre-freeze`, `post-thaw`, or the script's file name. */
  readonly hook: string;
  readonly phase: HookPhase;
  readonly ok: boolean;
  readonly exitCode: number | null;
  readonly signal: string | null;
  readonly timedOut: boolean;
  /** Killed because deltadisk was interrupted (SIGINT, SIGTERM). */
  readonly interrupted: boolean;
  /** Why it could not start (ENOENT, EACCES …). */
  readonly error: string | null;
  readonly startedAt: string;
  readonly durationMs: number;
  readonly output: string;
  readonly outputTruncated: boolean;
}

export interface RunHookOptions {
  readonly phase: HookPhase;
  readonly env: Readonly<Record<string, string>>;
  readonly timeoutMs: number;
  /** Aborting kills the hook (used for freeze hooks only: thaw hooks always finish). */
  readonly signal?: AbortSignal;
  readonly killGraceMs?: number;
  readonly onOutput?: (hook: string, phase: HookPhase, stream: 'stdout' | 'stderr', text: string) => void;
}

const KEEP = 32 * 1024;
const DRAIN_MS = 200;

class BoundedOutput {
  #head = Buffer.alloc(0);
  #tail = Buffer.alloc(0);
  #total = 0;

  add(chunk: Buffer): void {
    this.#total += chunk.length;
    if (this.#head.length < KEEP) {
      const take = Math.min(KEEP - this.#head.length, chunk.length);
      this.#head = Buffer.concat([this.#head, chunk.subarray(0, take)]);
      chunk = chunk.subarray(take);
    }
    if (chunk.length > 0) {
      const t = Buffer.concat([this.#tail, chunk]);
      this.#tail = t.length > KEEP ? t.subarray(t.length - KEEP) : t;
    }
  }

  get truncated(): boolean {
    return this.#total > this.#head.length + this.#tail.length;
  }

  text(): string {
    const gap = this.truncated ? `\n[… ${this.#total - this.#head.length - this.#tail.length} bytes of output omitted …]\n` : '';
    return `${this.#head.toString('utf8')}${gap}${this.#tail.toString('utf8')}`;
  }
}

function killGroup(pid: number | undefined, sig: NodeJS.Signals): void {
  if (pid === undefined) return;
  try {
    process.kill(-pid, sig);
  } catch {
    // already gone
  }
}

export function runHook(inv: HookInvocation, o: RunHookOptions): Promise<HookOutcome> {
  const started = Date.now();
  const startedAt = new Date(started).toISOString();
  const out = new BoundedOutput();
  const env = sanitizeEnv({ ...process.env, ...o.env, DELTADISK_HOOK_PHASE: o.phase });
  const failedToStart = (error: string): HookOutcome => ({
    hook: inv.name,
    phase: o.phase,
    ok: false,
    exitCode: null,
    signal: null,
    timedOut: false,
    interrupted: false,
    error,
    startedAt,
    durationMs: Date.now() - started,
    output: '',
    outputTruncated: false,
  });
  return new Promise<HookOutcome>((resolve) => {
    let timedOut = false;
    let interrupted = false;
    let settled = false;
    let exit: { code: number | null; signal: string | null } | undefined;
    let drain: NodeJS.Timeout | undefined;
    let killTimer: NodeJS.Timeout | undefined;
    let child: ChildProcess;
    try {
      child =
        inv.kind === 'command'
          ? spawn('/bin/sh', ['-c', inv.command, inv.name, o.phase], { detached: true, stdio: ['ignore', 'pipe', 'pipe'], env })
          : spawn(inv.path, [o.phase], { detached: true, stdio: ['ignore', 'pipe', 'pipe'], env });
    } catch (err) {
      // spawn throws synchronously for arguments it refuses (NUL in a command, …).
      resolve(failedToStart(err instanceof Error ? err.message : String(err)));
      return;
    }
    const finish = (error: string | null): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      clearTimeout(drain);
      clearTimeout(killTimer);
      o.signal?.removeEventListener('abort', onAbort);
      // A hook we stopped must not leave processes behind that ignored SIGTERM.
      if (timedOut || interrupted) killGroup(child.pid, 'SIGKILL');
      // The pipes may stay open in a descendant; they must not keep deltadisk alive.
      (child.stdout as unknown as { unref?: () => void } | null)?.unref?.();
      (child.stderr as unknown as { unref?: () => void } | null)?.unref?.();
      child.unref();
      const code = exit?.code ?? null;
      resolve({
        hook: inv.name,
        phase: o.phase,
        ok: error === null && !timedOut && !interrupted && code === 0,
        exitCode: code,
        signal: exit?.signal ?? null,
        timedOut,
        interrupted,
        error,
        startedAt,
        durationMs: Date.now() - started,
        output: out.text(),
        outputTruncated: out.truncated,
      });
    };
    const stop = (): void => {
      killGroup(child.pid, 'SIGTERM');
      killTimer = setTimeout(() => killGroup(child.pid, 'SIGKILL'), o.killGraceMs ?? 2000);
    };
    const onAbort = (): void => {
      if (exit !== undefined || settled) return;
      interrupted = true;
      stop();
    };
    const timer = setTimeout(() => {
      if (exit !== undefined) return;
      timedOut = true;
      stop();
    }, o.timeoutMs);
    if (o.signal?.aborted === true) onAbort();
    else o.signal?.addEventListener('abort', onAbort, { once: true });
    for (const [stream, name] of [
      [child.stdout, 'stdout'],
      [child.stderr, 'stderr'],
    ] as const) {
      stream?.on('data', (chunk: Buffer) => {
        if (settled) return;
        out.add(chunk);
        try {
          o.onOutput?.(inv.name, o.phase, name, chunk.toString('utf8'));
        } catch {
          // A failing log callback must not take the hook bookkeeping down with it.
        }
      });
    }
    child.on('error', (err) => finish(err.message));
    child.on('exit', (code, signal) => {
      exit = { code, signal };
      drain = setTimeout(() => finish(null), DRAIN_MS);
    });
    child.on('close', () => {
      if (exit !== undefined) finish(null);
    });
  }).catch((err: unknown) => failedToStart(err instanceof Error ? err.message : String(err)));
}

/** Copies an environment, dropping unset values and replacing NUL (which spawn refuses) by U+FFFD. */
function sanitizeEnv(env: Record<string, string | undefined>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(env)) {
    if (v === undefined || k.length === 0 || k.includes('=') || k.includes('\0')) continue;
    out[k] = v.replaceAll('\0', '\uFFFD');
  }
  return out;
}
