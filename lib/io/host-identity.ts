/**
 * Who a lock holder is, as far as another process can tell: the host name, the
 * machine id, the boot id and the network namespace of the process that took it.
 *
 * A host name alone does not name a machine: two machines called `ubuntu` (or cloned
 * VMs) can share a directory over NFS. So "this lock was taken on this machine before
 * it last rebooted, so its holder is gone" needs the holder's machine id
 * (`/etc/machine-id`, unique per installation) to equal ours, not only its host name;
 * a lock without one (written before holders recorded it, or where the file does not
 * exist) proves nothing, and the caller falls back to what it does for another host.
 */
import fs from 'node:fs';
import os from 'node:os';

function readSmallFile(p: string): string {
  try {
    return fs.readFileSync(p, 'utf8').trim();
  } catch {
    return '';
  }
}

export const HOST = os.hostname();
export const BOOT_ID = readSmallFile('/proc/sys/kernel/random/boot_id') || 'unknown';
export const NETNS = (() => {
  try {
    return fs.readlinkSync('/proc/self/ns/net');
  } catch {
    return 'unknown';
  }
})();

const MACHINE_ID_FORM = /^[0-9a-f]{32}$/;

/** This installation's machine id (systemd's, or D-Bus's), or 'unknown'. */
export const MACHINE_ID = (() => {
  for (const p of ['/etc/machine-id', '/var/lib/dbus/machine-id']) {
    const id = readSmallFile(p);
    if (MACHINE_ID_FORM.test(id)) return id;
  }
  return 'unknown';
})();

/** Whether process `pid` exists on this host (EPERM: it does, under another user). */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export interface RecordedHost {
  readonly host: string;
  readonly bootId: string;
  /** Absent in locks written before holders recorded it. */
  readonly machineId?: string | undefined;
}

/**
 * Whether `h` was recorded on this machine during an earlier boot (so whatever
 * process recorded it is gone): same host name and machine id, another boot id.
 */
export function rebootedSince(h: RecordedHost): boolean {
  return (
    h.host === HOST &&
    h.machineId === MACHINE_ID &&
    MACHINE_ID !== 'unknown' &&
    h.bootId !== BOOT_ID &&
    h.bootId !== 'unknown' &&
    BOOT_ID !== 'unknown'
  );
}
