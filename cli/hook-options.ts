/**
 * The quiesce-hook options shared by every command that freezes a VM (`vm snapshot
 * create` now, `vm backup` later): one definition, one parser, one rendering of
 * hook output on stderr.
 */
import { InvalidArgumentError, Option, type Command } from 'commander';
import type { HookLogEntry, HookOutcome, HookSpec, QuiesceMode } from '../lib/index.js';
import type { Output } from './output.js';

export interface HookCliOptions {
  preFreeze?: string;
  postThaw?: string;
  hooksDir?: string;
  hookTimeout?: number;
  quiesce?: QuiesceMode;
}

/** `60`, `60s`, `500ms`, `2m` → milliseconds. */
export function parseDuration(text: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m)?\s*$/.exec(text);
  if (m === null) throw new InvalidArgumentError(`not a duration: ${JSON.stringify(text)} (use e.g. 60, 60s, 500ms, 2m)`);
  const ms = Number(m[1]) * (m[2] === 'ms' ? 1 : m[2] === 'm' ? 60_000 : 1000);
  if (!Number.isSafeInteger(Math.round(ms)) || ms < 1) throw new InvalidArgumentError(`${text} is not a usable duration`);
  return Math.round(ms);
}

export function addHookOptions(cmd: Command): Command {
  return cmd
    .option('--pre-freeze <cmd>', 'shell command run first at freeze ($1 = freeze)')
    .option('--post-thaw <cmd>', 'shell command run last at thaw ($1 = thaw or freezeFail)')
    .option('--hooks-dir <dir>', 'run the executables in <dir> in byte order with "freeze", in reverse with "thaw"')
    .option('--hook-timeout <duration>', 'time limit per hook (default 60s)', parseDuration)
    .addOption(new Option('--quiesce <mode>', 'required: a failed freeze aborts (default); optional: continue crash-consistent').choices(['required', 'optional']));
}

export function hookSpecFrom(o: HookCliOptions): HookSpec {
  return {
    ...(o.preFreeze === undefined ? {} : { preFreeze: o.preFreeze }),
    ...(o.postThaw === undefined ? {} : { postThaw: o.postThaw }),
    ...(o.hooksDir === undefined ? {} : { hooksDir: o.hooksDir }),
    ...(o.hookTimeout === undefined ? {} : { timeoutMs: o.hookTimeout }),
    ...(o.quiesce === undefined ? {} : { quiesce: o.quiesce }),
  };
}

/** Hook output as it arrives, on stderr (not with --quiet or --json). */
export function hookLogger(out: Output): (e: HookLogEntry) => void {
  return (e) => {
    for (const line of e.text.replace(/\n$/, '').split('\n')) out.info(`[hook ${e.hook} ${e.phase}] ${line}`);
  };
}

export function describeOutcome(o: HookOutcome): string {
  const how = o.ok ? 'ok' : o.timedOut ? 'timed out' : o.interrupted ? 'interrupted' : o.error !== null ? `failed to start: ${o.error}` : `exit ${o.exitCode ?? o.signal}`;
  return `${o.hook} ${o.phase}: ${how} (${o.durationMs} ms)`;
}
