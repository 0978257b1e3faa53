/**
 * Proof that a lock holder on this host is gone, without trusting pids or clocks.
 *
 * Each repository lock holder binds a Linux abstract Unix socket named after its
 * lock token. The kernel releases the name the instant the process dies (SIGKILL
 * included), so another process on the same host, boot and network namespace that
 * finds the name unbound knows the holder is gone; a pid can be reused, a clock can
 * jump, a socket name cannot outlive its owner. (The same idea as the chain's writer
 * lock, lib/io/writer-lock.ts.) Where the holder cannot be probed (another host or
 * namespace, or another boot of a host of the same name that is not provably this
 * machine) the answer is 'unknown' and the caller falls back to the lock's age.
 */
import net from 'node:net';
import { BOOT_ID, HOST, NETNS, pidAlive, rebootedSince } from '../io/host-identity.js';

export { BOOT_ID, HOST, MACHINE_ID, NETNS } from '../io/host-identity.js';
const ABSTRACT = process.platform === 'linux';
const PROBE_TIMEOUT_MS = 2000;

function socketName(token: string): string {
  return `\0deltadisk-repo-lock-${token}`;
}

/** Binds the liveness socket for `token`; undefined where abstract sockets do not exist. */
export function holdLiveness(token: string): Promise<net.Server | undefined> {
  if (!ABSTRACT) return Promise.resolve(undefined);
  return new Promise((resolve, reject) => {
    const server = net.createServer((sock) => {
      sock.on('error', () => undefined);
      sock.end(token);
    });
    server.once('error', reject);
    server.listen({ path: socketName(token) }, () => {
      server.unref();
      resolve(server);
    });
  });
}

export function releaseLiveness(server: net.Server | undefined): Promise<void> {
  return new Promise((resolve) => (server === undefined ? resolve() : server.close(() => resolve())));
}

export interface HolderIdentity {
  readonly host: string;
  readonly pid: number;
  readonly bootId: string;
  /** Absent in identities recorded before holders wrote it (lib/io/host-identity.ts). */
  readonly machineId?: string | undefined;
  readonly netns: string;
  readonly token: string;
}

/** 'dead' only with proof; 'unknown' when the holder cannot be checked from here. */
export async function probeHolder(h: HolderIdentity): Promise<'alive' | 'dead' | 'unknown'> {
  if (h.host !== HOST) return 'unknown';
  if (rebootedSince(h)) return 'dead';
  // Another boot, and not provably of this machine: a namesake host's, which the
  // checks below (pids, namespaces, socket names) know nothing of.
  if (h.bootId !== BOOT_ID) return 'unknown';
  if (!ABSTRACT) return pidAlive(h.pid) ? 'alive' : 'dead';
  if (h.netns !== NETNS || NETNS === 'unknown') return 'unknown';
  return new Promise((resolve) => {
    const sock = net.createConnection({ path: socketName(h.token) });
    const timer = setTimeout(() => {
      sock.destroy();
      resolve('alive');
    }, PROBE_TIMEOUT_MS);
    sock.on('connect', () => {
      clearTimeout(timer);
      sock.destroy();
      resolve('alive');
    });
    sock.on('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      resolve(err.code === 'ECONNREFUSED' || err.code === 'ENOENT' ? 'dead' : 'alive');
    });
  });
}
