/**
 * Classifies the directory entries of a VM that no configuration names: what must
 * not be copied (with the reason a human can act on) and what nobody claims.
 *
 * Pure: decisions depend on the entry's name, whether it is a directory, and
 * whether the VM is suspended. Nothing here is added to a backup; an entry that is
 * not recognised is 'unknown' and is reported, never silently dropped or guessed in.
 */
import { TEMP_INFIX } from '../io/atomic-replace.js';
import type { SkipKind } from './vm-inventory-types.js';

export const CAPTURE_DIR_PREFIX = '.deltadisk-capture-';

export interface Leftover {
  readonly kind: SkipKind;
  readonly reason: string;
}

export function classifyLeftover(name: string, isDirectory: boolean, suspended: boolean): Leftover {
  const lower = name.toLowerCase();
  if (isDirectory) {
    if (lower.endsWith('.lck')) return { kind: 'lock', reason: 'lock directory of a running VMware product (or left behind by a crash)' };
    if (name.startsWith(CAPTURE_DIR_PREFIX)) return { kind: 'capture', reason: 'capture directory of a backup in progress (or interrupted)' };
    return { kind: 'not-a-file', reason: 'a directory: VM directories are flat, subdirectories are not part of the VM' };
  }
  if (lower.startsWith('.lck-')) return { kind: 'lock', reason: 'NFS lock file of an ESXi host' };
  if (lower.endsWith('.vswp')) return { kind: 'swap', reason: 'swap file: recreated at power-on, its content is meaningless afterwards' };
  if (lower.endsWith('.vmem')) {
    return suspended
      ? { kind: 'orphan', reason: 'memory file not matching the suspend state' }
      : { kind: 'live-memory', reason: 'paging file of the running VM: its content is only valid together with the running process' };
  }
  if (lower.endsWith('.vmss')) return { kind: 'suspend-state', reason: 'suspend state of a VM that is not suspended (checkpoint.vmState does not name it)' };
  if (lower.endsWith('.hlog')) return { kind: 'host-log', reason: 'vMotion host log' };
  if (lower.endsWith('-ctk.vmdk')) return { kind: 'change-tracking', reason: 'changed-block-tracking file, rebuilt by the host' };
  if (lower.includes('.redo_')) return { kind: 'temporary', reason: 'redo log of an interrupted VMware operation' };
  if (name.includes(TEMP_INFIX)) return { kind: 'temporary', reason: 'temporary file of an interrupted atomic write' };
  if (lower.endsWith('.lock')) return { kind: 'lock', reason: 'deltadisk lock file (names the process holding a disk or the VM)' };
  if (lower.endsWith('.vmsn')) return { kind: 'orphan', reason: 'snapshot state that the .vmsd does not name (orphan)' };
  if (lower.endsWith('.vmdk')) return { kind: 'orphan', reason: 'VMDK file that no disk or snapshot reaches (orphan delta or extent)' };
  if (lower.endsWith('.delta') || lower.endsWith('.chain')) return { kind: 'orphan', reason: 'deltadisk file that no disk of the VM uses' };
  if (lower.endsWith('.nvram') || lower.endsWith('.vmxf') || lower.endsWith('.vmsd')) return { kind: 'orphan', reason: 'VM file that the configuration does not name' };
  if (lower.endsWith('.scoreboard')) return { kind: 'temporary', reason: 'runtime statistics of a running VM' };
  if (/^vmware(-\d+)?\.log$/.test(lower)) return { kind: 'log', reason: 'log file (logs excluded)' };
  return { kind: 'unknown', reason: 'not named by the VM configuration and not a known VM file' };
}

/** `vmware.log` and its rotations. */
export function isVmwareLog(name: string): boolean {
  return /^vmware(-\d+)?\.log$/i.test(name);
}
