/**
 * Unix domain sockets as files next to a disk: bound safely, found again, removed.
 *
 *  - A socket path longer than sun_path allows (107 bytes) would be silently
 *    truncated by the platform, binding somewhere else entirely; we reach it
 *    through /proc/self/fd/<directory fd>/<name> instead (Linux), or refuse.
 *  - A socket file left by a killed process is stale: nobody accepts on it. It is
 *    removed and bound again; a socket someone still answers on is LOCKED, and a
 *    file that is not a socket is never touched (ALREADY_EXISTS).
 *  - The socket is made mode 0600 (only its owner may connect), and on release it
 *    is unlinked only if it is still the one we bound (same inode).
 */
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { DeltaDiskError, fromSystemError } from '../errors.js';

const MAX_SUN_PATH = 107;
const PROBE_TIMEOUT_MS = 1000;

/** A connectable address for `file`, and what to release once connected or bound. */
function addressOf(file: string): { address: string; done: () => void } {
  if (Buffer.byteLength(file) <= MAX_SUN_PATH) return { address: file, done: () => undefined };
  const name = path.basename(file);
  if (process.platform === 'linux') {
    let fd: number;
    try {
      fd = fs.openSync(path.dirname(file), 'r');
    } catch (err) {
      throw fromSystemError(err, path.dirname(file), 'opening socket directory failed');
    }
    const address = `/proc/self/fd/${fd}/${name}`;
    if (Buffer.byteLength(address) <= MAX_SUN_PATH) return { address, done: () => fs.closeSync(fd) };
    fs.closeSync(fd);
  }
  throw new DeltaDiskError('LIMIT_EXCEEDED', `socket path ${file} is longer than the ${MAX_SUN_PATH} bytes a Unix socket address allows`, {
    path: file,
  });
}

/** Connects to the socket at `file`; rejects with the system error (ENOENT, ECONNREFUSED …) unchanged. */
export function connectUnix(file: string, timeoutMs = PROBE_TIMEOUT_MS): Promise<net.Socket> {
  let addr: { address: string; done: () => void };
  try {
    addr = addressOf(path.resolve(file));
  } catch (err) {
    return Promise.reject(err);
  }
  return new Promise((resolve, reject) => {
    const sock = net.createConnection({ path: addr.address });
    const timer = setTimeout(() => {
      sock.destroy();
      reject(Object.assign(new Error(`connecting to ${file} timed out`), { code: 'ETIMEDOUT' }));
    }, timeoutMs);
    sock.once('connect', () => {
      clearTimeout(timer);
      addr.done();
      sock.removeAllListeners('error');
      resolve(sock);
    });
    sock.once('error', (err) => {
      clearTimeout(timer);
      addr.done();
      reject(err);
    });
  });
}

/** True when something accepts connections on the socket at `file`. */
async function answers(file: string): Promise<boolean> {
  try {
    const s = await connectUnix(file);
    s.destroy();
    return true;
  } catch {
    return false;
  }
}

export interface BoundSocket {
  readonly path: string;
  /** Stops listening and removes the socket file if it is still ours. Idempotent. */
  release(): Promise<void>;
}

/**
 * Makes `server` listen on a socket file at `file` (see the file comment).
 * @throws LOCKED (a live server answers there), ALREADY_EXISTS (not a socket), LIMIT_EXCEEDED, IO_ERROR
 */
export async function listenUnix(server: net.Server, file: string, mode = 0o600): Promise<BoundSocket> {
  const abs = path.resolve(file);
  const existing = await fs.promises.lstat(abs).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return undefined;
    throw fromSystemError(err, abs, 'checking socket path failed');
  });
  if (existing !== undefined) {
    if (!existing.isSocket()) throw new DeltaDiskError('ALREADY_EXISTS', `${abs} exists and is not a socket; not replacing it`, { path: abs });
    if (await answers(abs)) throw new DeltaDiskError('LOCKED', `another process is listening on ${abs}`, { path: abs });
    await fs.promises.unlink(abs).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'ENOENT') throw fromSystemError(err, abs, 'removing stale socket failed');
    });
  }
  const addr = addressOf(abs);
  try {
    await new Promise<void>((resolve, reject) => {
      const onError = (err: NodeJS.ErrnoException): void => {
        reject(
          err.code === 'EADDRINUSE'
            ? new DeltaDiskError('LOCKED', `another process bound ${abs} at the same moment`, { path: abs })
            : fromSystemError(err, abs, 'listening on socket failed'),
        );
      };
      server.once('error', onError);
      server.listen({ path: addr.address }, () => {
        server.off('error', onError);
        resolve();
      });
    });
  } finally {
    addr.done();
  }
  let ino: number;
  try {
    await fs.promises.chmod(abs, mode);
    ino = (await fs.promises.lstat(abs)).ino;
  } catch (err) {
    await closeServer(server);
    throw fromSystemError(err, abs, 'securing socket failed');
  }
  let released = false;
  return {
    path: abs,
    async release() {
      if (released) return;
      released = true;
      await closeServer(server);
      removeIfOurs(abs, ino);
    },
  };
}

/** Removes the socket file synchronously if it is still the one with inode `ino` (for exit handlers). */
export function removeIfOurs(file: string, ino: number): void {
  try {
    if (fs.lstatSync(file).ino === ino) fs.unlinkSync(file);
  } catch {
    // Gone already, or not ours to remove.
  }
}

/**
 * Stops `server` accepting connections. Connections already accepted are their
 * owner's business; with `wait` this resolves only once they have all closed.
 */
export function closeServer(server: net.Server, wait = false): Promise<void> {
  return new Promise((resolve) => {
    if (!server.listening) return resolve();
    server.close(() => {
      if (wait) resolve();
    });
    if (!wait) resolve();
  });
}
