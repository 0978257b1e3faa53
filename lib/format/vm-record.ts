/**
 * The VM record of a backup manifest: what `vm backup` captured and how.
 *
 * A manifest written by `vm backup` carries, besides its entries (the VM
 * directory's files at the top level, chain disks as `chain` entries), a map `vm`:
 *
 *     dir, vmx, name, capturedAt, consistency, freezeWindowMs, copiedWhileFrozen,
 *     quiesce { mode, quiesced, failure, thawFailed, hooks [ … ] },
 *     disks [ { node, fileName, format, entries [ … ] } ],
 *     outside [ { entry, path } ], warnings [ … ]
 *
 * `consistency` is what the restore can promise: `quiesced` (every freeze hook
 * succeeded) or `crash-consistent` (as if power had been lost at the capture
 * instant). Each hook outcome keeps its exit status, timing and output (bounded:
 * the head and tail of each, at most MAX_HOOK_OUTPUT characters). Decoding bounds
 * every list and string, like the rest of the manifest; a reader that does not know
 * the key ignores it, so adding it needed no format version change.
 */
import type { Fields } from './framed.js';
import { MAX_PATH_BYTES, MAX_TEXT } from './repo-limits.js';

export const MAX_VM_HOOKS = 256;
export const MAX_HOOK_OUTPUT = 16 * 1024;
export const MAX_VM_DISKS = 256;
export const MAX_VM_WARNINGS = 256;
const MAX_DISK_ENTRIES = 4096;

export type VmConsistency = 'quiesced' | 'crash-consistent';
const CONSISTENCIES: readonly string[] = ['quiesced', 'crash-consistent'];
const PHASES: readonly string[] = ['freeze', 'thaw', 'freezeFail'];

export interface VmHookRecord {
  readonly hook: string;
  readonly phase: 'freeze' | 'thaw' | 'freezeFail';
  readonly ok: boolean;
  readonly exitCode: number | null;
  readonly signal: string | null;
  readonly timedOut: boolean;
  readonly interrupted: boolean;
  readonly error: string | null;
  readonly startedAt: string;
  readonly durationMs: number;
  readonly output: string;
  readonly outputTruncated: boolean;
}

export interface VmDiskRecord {
  /** Device node in the vmx (`scsi0:0`). */
  readonly node: string;
  /** The vmx `fileName`. */
  readonly fileName: string;
  readonly format: 'vmdk' | 'chain';
  /** The manifest entries (paths) holding the disk: descriptor, extents, deltas, or the chain. */
  readonly entries: readonly string[];
}

export interface VmRecord {
  /** The VM directory backed up (absolute). */
  readonly dir: string;
  /** The configuration file's entry path. */
  readonly vmx: string;
  readonly name: string | null;
  /** When the capture window opened (ISO 8601). */
  readonly capturedAt: string;
  readonly consistency: VmConsistency;
  readonly freezeWindowMs: number;
  readonly copiedWhileFrozen: boolean;
  readonly quiesce: {
    readonly mode: 'required' | 'optional';
    readonly quiesced: boolean;
    readonly failure: string | null;
    readonly thawFailed: boolean;
    readonly hooks: readonly VmHookRecord[];
  };
  readonly disks: readonly VmDiskRecord[];
  /** Files that lived outside the VM directory: the entry holding each and where it was. */
  readonly outside: readonly { readonly entry: string; readonly path: string }[];
  readonly warnings: readonly string[];
}

/** Keeps the head and the tail of a hook's output within MAX_HOOK_OUTPUT characters. */
export function boundHookOutput(output: string, truncated: boolean): { output: string; outputTruncated: boolean } {
  if (output.length <= MAX_HOOK_OUTPUT) return { output, outputTruncated: truncated };
  const half = MAX_HOOK_OUTPUT / 2 - 32;
  return { output: `${output.slice(0, half)}\n[… ${output.length - 2 * half} characters left out …]\n${output.slice(-half)}`, outputTruncated: true };
}

export function encodeVmRecord(r: VmRecord): Record<string, unknown> {
  return {
    dir: r.dir,
    vmx: r.vmx,
    name: r.name,
    capturedAt: r.capturedAt,
    consistency: r.consistency,
    freezeWindowMs: r.freezeWindowMs,
    copiedWhileFrozen: r.copiedWhileFrozen,
    quiesce: {
      mode: r.quiesce.mode,
      quiesced: r.quiesce.quiesced,
      failure: r.quiesce.failure,
      thawFailed: r.quiesce.thawFailed,
      hooks: r.quiesce.hooks.map((h) => ({ ...h, ...boundHookOutput(h.output, h.outputTruncated) })),
    },
    disks: r.disks.map((d) => ({ node: d.node, fileName: d.fileName, format: d.format, entries: d.entries })),
    outside: r.outside.map((o) => ({ entry: o.entry, path: o.path })),
    warnings: r.warnings.slice(0, MAX_VM_WARNINGS).map((w) => w.slice(0, MAX_TEXT)),
  };
}

function optInt(f: Fields, key: string): number | null {
  return f.has(key) ? f.int(key, -(2 ** 31), 2 ** 31) : null;
}

function decodeHook(f: Fields): VmHookRecord {
  const phase = f.str('phase', 16);
  if (!PHASES.includes(phase)) f.fail(`hook phase ${JSON.stringify(phase)} is unknown`);
  return {
    hook: f.str('hook', 255, 1),
    phase: phase as VmHookRecord['phase'],
    ok: f.bool('ok'),
    exitCode: optInt(f, 'exitCode'),
    signal: f.optStr('signal', 32),
    timedOut: f.bool('timedOut'),
    interrupted: f.bool('interrupted'),
    error: f.optStr('error', MAX_TEXT),
    startedAt: f.str('startedAt', 64),
    durationMs: f.int('durationMs', 0, 2 ** 40),
    output: f.str('output', MAX_HOOK_OUTPUT),
    outputTruncated: f.bool('outputTruncated'),
  };
}

/**
 * Decodes the `vm` map of a manifest.
 * @throws REPO_CORRUPT (through `f`)
 */
export function decodeVmRecord(f: Fields, make: (v: unknown, what: string) => Fields): VmRecord {
  const consistency = f.str('consistency', 32);
  if (!CONSISTENCIES.includes(consistency)) f.fail(`consistency ${JSON.stringify(consistency)} is unknown`);
  const q = f.fields('quiesce');
  const mode = q.str('mode', 16);
  if (mode !== 'required' && mode !== 'optional') q.fail(`quiesce mode ${JSON.stringify(mode)} is unknown`);
  const freezeWindowMs = f.num('freezeWindowMs');
  if (freezeWindowMs < 0) f.fail('freezeWindowMs is negative');
  return {
    dir: f.str('dir', MAX_PATH_BYTES, 1),
    vmx: f.str('vmx', MAX_PATH_BYTES, 1),
    name: f.optStr('name', MAX_TEXT),
    capturedAt: f.str('capturedAt', 64),
    consistency: consistency as VmConsistency,
    freezeWindowMs,
    copiedWhileFrozen: f.bool('copiedWhileFrozen'),
    quiesce: {
      mode: mode as 'required' | 'optional',
      quiesced: q.bool('quiesced'),
      failure: q.optStr('failure', MAX_TEXT),
      thawFailed: q.bool('thawFailed'),
      hooks: q.array('hooks', MAX_VM_HOOKS).map((h) => decodeHook(make(h, 'manifest vm hook'))),
    },
    disks: f.array('disks', MAX_VM_DISKS).map((d) => {
      const g = make(d, 'manifest vm disk');
      const format = g.str('format', 8);
      if (format !== 'vmdk' && format !== 'chain') g.fail(`disk format ${JSON.stringify(format)} is unknown`);
      return { node: g.str('node', 64, 1), fileName: g.str('fileName', MAX_PATH_BYTES, 1), format: format as VmDiskRecord['format'], entries: g.strings('entries', MAX_DISK_ENTRIES, MAX_PATH_BYTES) };
    }),
    outside: f.array('outside', MAX_DISK_ENTRIES).map((o) => {
      const g = make(o, 'manifest vm outside file');
      return { entry: g.str('entry', MAX_PATH_BYTES, 1), path: g.str('path', MAX_PATH_BYTES, 1) };
    }),
    warnings: f.strings('warnings', MAX_VM_WARNINGS, MAX_TEXT),
  };
}
