/**
 * Which quiesce hooks run, in which order: VMware Tools' rules, on the host.
 *
 *  - `preFreeze` / `postThaw` are shell commands (VMware's legacy pre-freeze and
 *    post-thaw scripts): the pre-freeze command runs first of all freeze hooks, the
 *    post-thaw command last of all thaw hooks (also with `freezeFail`).
 *  - `hooksDir` (VMware's backupScripts.d): every regular, executable file directly
 *    in it (no recursion), sorted by byte order, runs with the argument `freeze`, and
 *    in reverse order with `thaw`. Editor and package-manager leftovers (`*~`,
 *    `*.bak`, `*.orig`, `*.rpmnew`, `*.rpmsave`, `*.dpkg-*`, dot files) and
 *    non-executable files are not run and are listed in `skipped` (the qemu-ga
 *    hook's rules), so a forgotten `chmod +x` is visible, not silent.
 * A unit pairs what freezes with what thaws: unit 0 is the command pair, then one
 * unit per script.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { DeltaDiskError, fromSystemError } from '../../errors.js';

export type QuiesceMode = 'required' | 'optional';

export const DEFAULT_HOOK_TIMEOUT_MS = 60_000;
export const MAX_HOOK_SCRIPTS = 1000;

export interface HookSpec {
  /** Shell command run before the scripts of `hooksDir` at freeze. */
  readonly preFreeze?: string;
  /** Shell command run after the scripts of `hooksDir` at thaw (and at freezeFail). */
  readonly postThaw?: string;
  /** Directory of hook scripts (VMware's backupScripts.d). */
  readonly hooksDir?: string;
  /** Per-hook time limit in milliseconds; default 60 s. */
  readonly timeoutMs?: number;
  /**
   * `required` (default): a failing or timed-out freeze aborts the operation.
   * `optional`: it continues crash-consistent and says so.
   */
  readonly quiesce?: QuiesceMode;
}

export type HookInvocation =
  /** A shell command: `/bin/sh -c <command> <name> <phase>` ($1 is the phase). */
  | { readonly kind: 'command'; readonly name: string; readonly command: string }
  /** An executable file run as `<path> <phase>`. */
  | { readonly kind: 'script'; readonly name: string; readonly path: string };

export interface HookUnit {
  readonly freeze: HookInvocation | undefined;
  readonly thaw: HookInvocation | undefined;
}

export interface HookPlan {
  readonly units: readonly HookUnit[];
  readonly skipped: readonly { readonly name: string; readonly reason: string }[];
  readonly timeoutMs: number;
  readonly mode: QuiesceMode;
}

const LEFTOVER = /(~|\.bak|\.orig|\.rpmnew|\.rpmsave|\.dpkg-[a-z]+)$/i;

/** True when the spec asks for any hook. */
export function hasHooks(spec: HookSpec): boolean {
  return spec.preFreeze !== undefined || spec.postThaw !== undefined || spec.hooksDir !== undefined;
}

/** @throws INVALID_ARGUMENT (bad timeout, empty command), NOT_FOUND / INVALID_ARGUMENT (hooks dir), LIMIT_EXCEEDED */
export async function planHooks(spec: HookSpec): Promise<HookPlan> {
  const timeoutMs = spec.timeoutMs ?? DEFAULT_HOOK_TIMEOUT_MS;
  if (!Number.isSafeInteger(timeoutMs) || timeoutMs <= 0) throw new DeltaDiskError('INVALID_ARGUMENT', `a hook timeout must be a positive number of milliseconds, got ${String(timeoutMs)}`);
  const mode = spec.quiesce ?? 'required';
  if (mode !== 'required' && mode !== 'optional') throw new DeltaDiskError('INVALID_ARGUMENT', `quiesce mode must be required or optional, got ${JSON.stringify(mode)}`);
  for (const [k, v] of [['pre-freeze', spec.preFreeze], ['post-thaw', spec.postThaw]] as const) {
    if (v !== undefined && v.trim() === '') throw new DeltaDiskError('INVALID_ARGUMENT', `the ${k} command is empty`);
  }
  const units: HookUnit[] = [];
  if (spec.preFreeze !== undefined || spec.postThaw !== undefined) {
    units.push({
      freeze: spec.preFreeze === undefined ? undefined : { kind: 'command', name: 'pre-freeze', command: spec.preFreeze },
      thaw: spec.postThaw === undefined ? undefined : { kind: 'command', name: 'post-thaw', command: spec.postThaw },
    });
  }
  const skipped: { name: string; reason: string }[] = [];
  if (spec.hooksDir !== undefined) {
    const dir = path.resolve(spec.hooksDir);
    const st = await fs.stat(dir).catch((err: unknown) => {
      throw fromSystemError(err, dir, 'opening the hooks directory failed');
    });
    if (!st.isDirectory()) throw new DeltaDiskError('INVALID_ARGUMENT', `${dir} is not a directory`, { path: dir });
    const names = await fs.readdir(dir);
    if (names.length > MAX_HOOK_SCRIPTS) throw new DeltaDiskError('LIMIT_EXCEEDED', `${dir} holds more than ${MAX_HOOK_SCRIPTS} entries`, { path: dir });
    names.sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
    for (const name of names) {
      const p = path.join(dir, name);
      if (name.startsWith('.') || LEFTOVER.test(name)) {
        skipped.push({ name, reason: 'backup or hidden file' });
        continue;
      }
      const s = await fs.stat(p).catch(() => undefined);
      if (s === undefined || !s.isFile()) {
        skipped.push({ name, reason: 'not a regular file' });
        continue;
      }
      if ((s.mode & 0o111) === 0) {
        skipped.push({ name, reason: 'not executable' });
        continue;
      }
      const script: HookInvocation = { kind: 'script', name, path: p };
      units.push({ freeze: script, thaw: script });
    }
  }
  return { units, skipped, timeoutMs, mode };
}
