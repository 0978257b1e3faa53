/**
 * Repository locks, restic-style: lock files in `locks/`, shared or exclusive.
 *
 *  - `shared` (backup, restore, check, stats, diff) excludes only `exclusive`;
 *  - `maintenance` (forget, prune) excludes `maintenance` and `exclusive`, but not
 *    backups: prune stays safe against them through its plan (prune.ts);
 *  - `exclusive` excludes everything.
 *
 * Taking a lock: bind the liveness socket, write our lock file durably, then list the
 * others; a conflicting live lock makes us remove ours and fail with LOCKED. Two
 * racers both see each other and both back off, never both win. A lock whose holder
 * is provably gone (liveness.ts) is removed on the spot; one not refreshed for 30
 * minutes whose holder cannot be checked (another host) is ignored as stale and left
 * for `unlock`; an unreadable one blocks (LOCK_INVALID) until `unlock` removes it.
 *
 * A holder rewrites its file every 5 minutes. Before every step that publishes or
 * deletes, the holder calls `assertValid`: if its file was removed (by `unlock`) or
 * it could not refresh for 25 minutes (long enough that others may call it stale), it
 * stops with LOCK_LOST instead of acting on a lock others no longer honour.
 */
import { randomBytes } from 'node:crypto';
import type net from 'node:net';
import { DeltaDiskError, isDeltaDiskError } from '../errors.js';
import { MAX_LOCK_BYTES } from '../format/repo-limits.js';
import { decodeRepoLock, encodeRepoLock, type LockKind, type RepoLockInfo } from '../format/repo-lock.js';
import type { StorageBackend } from './backend.js';
import { BOOT_ID, HOST, holdLiveness, MACHINE_ID, NETNS, probeHolder, releaseLiveness } from './liveness.js';

export const LOCK_REFRESH_MS = 5 * 60 * 1000;
export const LOCK_STALE_MS = 30 * 60 * 1000;
/** A holder that could not refresh for this long stops (LOCK_LOST). */
export const LOCK_VALID_MS = 25 * 60 * 1000;

export function conflicts(a: LockKind, b: LockKind): boolean {
  if (a === 'exclusive' || b === 'exclusive') return true;
  return a === 'maintenance' && b === 'maintenance';
}

export type LockState = 'live' | 'dead' | 'stale' | 'invalid';

export interface ListedLock {
  readonly name: string;
  readonly info: RepoLockInfo | undefined;
  readonly state: LockState;
}

function describe(l: RepoLockInfo): string {
  return `${l.kind} lock of pid ${l.pid} on ${l.host} (${l.purpose}, since ${l.created})`;
}

async function classify(backend: StorageBackend, name: string, now: number): Promise<ListedLock | undefined> {
  let info: RepoLockInfo;
  try {
    info = decodeRepoLock(await backend.read('lock', name, MAX_LOCK_BYTES), `${backend.location}/locks/${name}`);
  } catch (err) {
    if (isDeltaDiskError(err, 'NOT_FOUND')) return undefined;
    if (isDeltaDiskError(err, 'LOCK_INVALID') || isDeltaDiskError(err, 'LIMIT_EXCEEDED')) return { name, info: undefined, state: 'invalid' };
    throw err;
  }
  if (info.token !== name) return { name, info, state: 'invalid' };
  const probe = await probeHolder(info);
  if (probe === 'dead') return { name, info, state: 'dead' };
  if (probe === 'alive') return { name, info, state: 'live' };
  return { name, info, state: now - Date.parse(info.refreshed) > LOCK_STALE_MS ? 'stale' : 'live' };
}

/**
 * Every lock file with what is known of its holder, but `except` (a caller's own
 * lock: not read back, its holder not probed).
 */
export async function listLocks(backend: StorageBackend, except?: string): Promise<ListedLock[]> {
  const now = Date.now();
  const out: ListedLock[] = [];
  for (const name of await backend.listNames('lock')) {
    if (name === except) continue;
    const l = await classify(backend, name, now);
    if (l !== undefined) out.push(l);
  }
  return out;
}

export interface AcquireOptions {
  /** Keep trying this long while the repository is locked (default 0: fail at once). */
  readonly retryMs?: number;
  readonly refreshMs?: number;
}

export class RepoLock {
  readonly kind: LockKind;
  readonly token: string;
  readonly #backend: StorageBackend;
  #info: RepoLockInfo;
  #server: net.Server | undefined;
  #timer: NodeJS.Timeout | undefined;
  #lastRefresh = performance.now();
  /** The same moment by the wall clock: the one other hosts judge staleness by. */
  #lastRefreshWall = Date.now();
  #lost: string | undefined;
  #released = false;
  #refreshing: Promise<void> | undefined;

  private constructor(backend: StorageBackend, info: RepoLockInfo, server: net.Server | undefined) {
    this.#backend = backend;
    this.#info = info;
    this.kind = info.kind;
    this.token = info.token;
    this.#server = server;
  }

  get info(): RepoLockInfo {
    return this.#info;
  }

  /** @throws LOCKED, LOCK_INVALID */
  static async acquire(backend: StorageBackend, kind: LockKind, purpose: string, options: AcquireOptions = {}): Promise<RepoLock> {
    const deadline = Date.now() + (options.retryMs ?? 0);
    for (let attempt = 0; ; attempt++) {
      try {
        return await RepoLock.#tryAcquire(backend, kind, purpose, options.refreshMs ?? LOCK_REFRESH_MS);
      } catch (err) {
        if (!isDeltaDiskError(err, 'LOCKED') || Date.now() >= deadline) throw err;
        await new Promise((r) => setTimeout(r, Math.min(5000, 50 * 2 ** Math.min(attempt, 7)) * (0.5 + Math.random())));
      }
    }
  }

  static async #tryAcquire(backend: StorageBackend, kind: LockKind, purpose: string, refreshMs: number): Promise<RepoLock> {
    const token = randomBytes(16).toString('hex');
    const now = new Date().toISOString();
    const info: RepoLockInfo = { kind, purpose, host: HOST, pid: process.pid, bootId: BOOT_ID, machineId: MACHINE_ID, netns: NETNS, created: now, refreshed: now, token };
    const server = await holdLiveness(token);
    try {
      await backend.write('lock', token, [encodeRepoLock(info)], 'create');
    } catch (err) {
      await releaseLiveness(server);
      throw err;
    }
    const lock = new RepoLock(backend, info, server);
    try {
      const others = await listLocks(backend, token);
      for (const o of others) {
        if (o.state === 'invalid') {
          throw new DeltaDiskError('LOCK_INVALID', `lock file locks/${o.name} of ${backend.location} cannot be read; if no other process uses the repository, run \`deltadisk unlock --repo\``, { path: backend.location });
        }
        if (o.state === 'dead') {
          await backend.remove('lock', o.name).catch(() => undefined);
          continue;
        }
        if (o.state === 'live' && conflicts(kind, o.info!.kind)) {
          throw new DeltaDiskError('LOCKED', `${backend.location} is locked: ${describe(o.info!)}`, { path: backend.location, holder: o.info });
        }
      }
    } catch (err) {
      await lock.release();
      throw err;
    }
    lock.#timer = setInterval(() => void lock.refresh(), refreshMs);
    lock.#timer.unref();
    return lock;
  }

  /** Rewrites the lock file with a new `refreshed` time (also run by the timer). */
  async refresh(): Promise<void> {
    if (this.#released || this.#lost !== undefined) return;
    if (this.#refreshing !== undefined) return this.#refreshing;
    this.#refreshing = (async () => {
      try {
        // Past LOCK_VALID_MS without a refresh, others may have judged the lock stale
        // and acted on it (a prune deleting what this holder is about to reference):
        // a late refresh must not bring it back.
        if (this.#checkGap()) return;
        if ((await this.#backend.size('lock', this.token)) === undefined) {
          this.#lost = 'its lock file was removed (by `deltadisk unlock`?)';
          return;
        }
        this.#info = { ...this.#info, refreshed: new Date().toISOString() };
        await this.#backend.write('lock', this.token, [encodeRepoLock(this.#info)], 'replace');
        if (this.#checkGap()) return;
        this.#lastRefresh = performance.now();
        this.#lastRefreshWall = Date.now();
      } catch {
        // Tried again at the next tick; assertValid stops the holder if this persists.
      } finally {
        this.#refreshing = undefined;
      }
    })();
    return this.#refreshing;
  }

  /**
   * Checks that the lock still stands before a step that publishes or deletes.
   * @throws LOCK_LOST
   */
  async assertValid(): Promise<void> {
    if (this.#released) throw new DeltaDiskError('LOCK_LOST', 'the repository lock was released');
    if (this.#lost === undefined && (await this.#backend.size('lock', this.token).catch(() => 0)) === undefined) {
      this.#lost = 'its lock file was removed (by `deltadisk unlock`?)';
    }
    this.#checkGap();
    if (this.#lost !== undefined) {
      throw new DeltaDiskError('LOCK_LOST', `the repository lock of this ${this.#info.purpose} was lost: ${this.#lost}; stopped before changing anything more`, {
        path: this.#backend.location,
      });
    }
  }

  /**
   * Marks the lock lost when it has gone unrefreshed for more than LOCK_VALID_MS, by
   * either clock: the monotonic one (immune to clock steps) or the wall clock (the
   * one others judge by, and the only one that runs while the machine is suspended).
   */
  #checkGap(): boolean {
    if (this.#lost !== undefined) return true;
    const gap = Math.max(performance.now() - this.#lastRefresh, Date.now() - this.#lastRefreshWall);
    if (gap > LOCK_VALID_MS) this.#lost = `it could not be refreshed for ${Math.round(gap / 60000)} minutes`;
    return this.#lost !== undefined;
  }

  /** Removes the lock file and the liveness socket; idempotent. */
  async release(): Promise<void> {
    if (this.#released) return;
    this.#released = true;
    if (this.#timer !== undefined) clearInterval(this.#timer);
    await this.#refreshing?.catch(() => undefined);
    try {
      await this.#backend.remove('lock', this.token);
    } finally {
      await releaseLiveness(this.#server);
      this.#server = undefined;
    }
  }
}

/**
 * Removes locks whose holders are gone (provably, or stale for 30 minutes) and
 * unreadable lock files; with `all`, every lock file. Refuses nothing: the caller
 * confirms `all` with the user.
 * @returns the locks removed
 */
export async function breakRepoLocks(backend: StorageBackend, all: boolean): Promise<ListedLock[]> {
  const removed: ListedLock[] = [];
  for (const l of await listLocks(backend)) {
    if (all || l.state !== 'live') {
      if (await backend.remove('lock', l.name)) removed.push(l);
    }
  }
  return removed;
}
