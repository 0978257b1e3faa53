/**
 * One writer per disk (or repository), across processes, with no stale-lock guessing.
 *
 * Node has no flock or OFD locks, and lock files alone force a choice between waiting
 * for a timeout and racing when a dead holder's file is taken over. So the mutual
 * exclusion itself is a Linux abstract-namespace Unix socket named after the locked
 * file: `bind` is atomic and exclusive, and the kernel releases the name the instant
 * the holder dies, SIGKILL included. Exactly one of any number of racing openers wins.
 *
 * Next to it, a lock file (`<target>.lock`, JSON) names the holder: host, pid, boot id,
 * network namespace, start time and purpose. It is what a second opener reports in its
 * LOCKED error (the holder also answers on the socket), and what protects against a
 * writer the socket cannot see: a process on another host sharing the directory over
 * NFS, or in another network namespace. Its life:
 *  - whoever holds the socket may replace a lock file whose holder is provably gone
 *    (same host, boot and namespace: it would hold the socket if it were alive; same
 *    host name and machine id, other boot id: the machine rebooted since. A host
 *    name alone does not prove the same machine: see host-identity.ts);
 *  - a lock file naming a holder we cannot check is LOCKED, and `deltadisk unlock`
 *    is the documented way out once the operator knows that holder is gone;
 *  - a lock file we cannot parse is LOCK_INVALID, with the same way out.
 *
 * On platforms without abstract sockets the lock file alone is used, with a pid
 * liveness check; that fallback is documented as weaker.
 */
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { DeltaDiskError, fromSystemError } from '../errors.js';
import { atomicReplace } from './atomic-replace.js';
import { BOOT_ID, MACHINE_ID, NETNS, pidAlive, rebootedSince } from './host-identity.js';
import { nodeFileSystem } from './node-file-system.js';

export interface LockHolder {
  readonly host: string;
  readonly pid: number;
  readonly bootId: string;
  /** Absent in lock files written before holders recorded it (host-identity.ts). */
  readonly machineId?: string | undefined;
  readonly netns: string;
  readonly started: string;
  readonly purpose: string;
  /** Random per acquisition: tells our own lock file apart from a successor's. */
  readonly token: string;
}

export interface WriterLock {
  readonly lockPath: string;
  readonly holder: LockHolder;
  /** Releases the lock; idempotent. */
  release(): Promise<void>;
}

const MAX_LOCK_FILE = 64 * 1024;
const HOLDER_QUERY_TIMEOUT_MS = 1000;

const HAS_ABSTRACT_SOCKETS = process.platform === 'linux';

export function lockPathFor(target: string): string {
  return `${target}.lock`;
}

function socketNameFor(lockPath: string): string {
  let dir = path.dirname(lockPath);
  try {
    dir = fs.realpathSync(dir);
  } catch {
    // The directory is checked by the caller; fall back to the name as given.
  }
  const digest = createHash('sha256').update(`${dir}\0${path.basename(lockPath)}`).digest('hex').slice(0, 40);
  return `\0deltadisk-lock-${digest}`;
}

function parseHolder(text: string): LockHolder | undefined {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof v !== 'object' || v === null) return undefined;
  const o = v as Record<string, unknown>;
  if (
    typeof o.host !== 'string' ||
    typeof o.pid !== 'number' ||
    !Number.isSafeInteger(o.pid) ||
    typeof o.bootId !== 'string' ||
    (o.machineId !== undefined && typeof o.machineId !== 'string') ||
    typeof o.netns !== 'string' ||
    typeof o.started !== 'string' ||
    typeof o.purpose !== 'string' ||
    typeof o.token !== 'string'
  ) {
    return undefined;
  }
  return o as unknown as LockHolder;
}

/** Reads the lock file: undefined when there is none, 'garbage' when it cannot be parsed. */
export function readLockFile(lockPath: string): LockHolder | 'garbage' | undefined {
  let text: string;
  try {
    const st = fs.lstatSync(lockPath);
    if (!st.isFile() || st.size > MAX_LOCK_FILE) return 'garbage';
    text = fs.readFileSync(lockPath, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw fromSystemError(err, lockPath, 'reading lock file failed');
  }
  return parseHolder(text) ?? 'garbage';
}

function describe(h: LockHolder): string {
  return `pid ${h.pid} on ${h.host} (${h.purpose}, since ${h.started})`;
}

/**
 * Can the holder named in a lock file be proven gone, given that we hold the socket?
 * `socketHeld` is false on platforms without abstract sockets.
 */
function provablyGone(h: LockHolder, socketHeld: boolean): boolean {
  if (h.host !== os.hostname()) return false;
  if (rebootedSince(h)) return true;
  // Another boot, and not provably of this machine: a namesake host sharing the
  // directory, whose pids and namespaces mean nothing here.
  if (h.bootId !== BOOT_ID) return false;
  if (socketHeld && h.netns === NETNS && NETNS !== 'unknown') return true;
  if (!socketHeld) return !pidAlive(h.pid);
  return false;
}

function queryHolder(name: string): Promise<LockHolder | undefined> {
  return new Promise((resolve) => {
    const sock = net.createConnection({ path: name });
    let text = '';
    const timer = setTimeout(() => {
      sock.destroy();
      resolve(undefined);
    }, HOLDER_QUERY_TIMEOUT_MS);
    sock.setEncoding('utf8');
    sock.on('data', (chunk: string) => {
      if (text.length < MAX_LOCK_FILE) text += chunk;
    });
    sock.on('end', () => {
      clearTimeout(timer);
      resolve(parseHolder(text));
    });
    sock.on('error', () => {
      clearTimeout(timer);
      resolve(undefined);
    });
  });
}

function bindSocket(name: string, holder: LockHolder): Promise<net.Server | 'in-use'> {
  return new Promise((resolve, reject) => {
    const server = net.createServer((sock) => {
      sock.on('error', () => undefined);
      sock.end(JSON.stringify(holder));
    });
    server.once('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'EADDRINUSE') resolve('in-use');
      else reject(err);
    });
    server.listen({ path: name }, () => {
      server.unref();
      resolve(server);
    });
  });
}

function closeServer(server: net.Server): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}

/**
 * Takes the writer lock for `target` (a disk descriptor or a repository directory).
 *
 * @throws LOCKED when another live writer holds it (the error's `holder` names it),
 *   LOCK_INVALID when the lock file is unreadable, IO_ERROR on file-system failure.
 */
export async function acquireWriterLock(target: string, purpose: string): Promise<WriterLock> {
  const lockPath = lockPathFor(target);
  const holder: LockHolder = {
    host: os.hostname(),
    pid: process.pid,
    bootId: BOOT_ID,
    machineId: MACHINE_ID,
    netns: NETNS,
    started: new Date().toISOString(),
    purpose,
    token: randomBytes(8).toString('hex'),
  };

  let server: net.Server | undefined;
  if (HAS_ABSTRACT_SOCKETS) {
    const name = socketNameFor(lockPath);
    for (let attempt = 0; ; attempt++) {
      const bound = await bindSocket(name, holder);
      if (bound !== 'in-use') {
        server = bound;
        break;
      }
      const other = await queryHolder(name);
      if (other !== undefined || attempt >= 20) {
        const who = other ?? readLockFile(lockPath);
        const named = typeof who === 'object' ? who : undefined;
        throw new DeltaDiskError(
          'LOCKED',
          `${target} is locked by ${named ? describe(named) : 'another process'}`,
          { path: target, holder: named },
        );
      }
      // The holder is closing its socket right now; try again shortly.
      await new Promise((r) => setTimeout(r, 5 + attempt * 5));
    }
  }

  try {
    const existing = readLockFile(lockPath);
    if (existing === 'garbage') {
      throw new DeltaDiskError(
        'LOCK_INVALID',
        `${lockPath} is not a valid lock file; if no other process uses ${target}, run \`deltadisk unlock\` on it`,
        { path: lockPath },
      );
    }
    if (existing !== undefined && !provablyGone(existing, server !== undefined)) {
      throw new DeltaDiskError(
        'LOCKED',
        `${target} is locked by ${describe(existing)}, which cannot be checked from here; ` +
          'if that process is gone, run `deltadisk unlock` on it',
        { path: target, holder: existing },
      );
    }
    await atomicReplace(nodeFileSystem, lockPath, Buffer.from(`${JSON.stringify(holder, null, 2)}\n`));
  } catch (err) {
    if (server) await closeServer(server);
    throw err;
  }

  let released = false;
  return {
    lockPath,
    holder,
    async release() {
      if (released) return;
      released = true;
      const now = readLockFile(lockPath);
      if (typeof now === 'object' && now.token === holder.token) {
        try {
          fs.unlinkSync(lockPath);
        } catch {
          // Already gone: nothing to release on disk.
        }
      }
      if (server) await closeServer(server);
    },
  };
}

/**
 * Removes a lock file left behind, for `deltadisk unlock`. Refuses while a live
 * writer on this host holds the lock.
 *
 * @returns what was removed (undefined when there was no lock file).
 */
export async function breakWriterLock(target: string): Promise<LockHolder | 'garbage' | undefined> {
  const lockPath = lockPathFor(target);
  if (HAS_ABSTRACT_SOCKETS) {
    const other = await queryHolder(socketNameFor(lockPath));
    if (other !== undefined) {
      throw new DeltaDiskError('LOCKED', `${target} is in use by ${describe(other)}; not unlocking`, {
        path: target,
        holder: other,
      });
    }
  }
  const existing = readLockFile(lockPath);
  if (existing === undefined) return undefined;
  if (existing !== 'garbage' && !HAS_ABSTRACT_SOCKETS && existing.host === os.hostname() && pidAlive(existing.pid)) {
    throw new DeltaDiskError('LOCKED', `${target} is in use by ${describe(existing)}; not unlocking`, {
      path: target,
      holder: existing,
    });
  }
  try {
    fs.unlinkSync(lockPath);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw fromSystemError(err, lockPath, 'unlock failed');
  }
  return existing;
}
