/**
 * Repository lock files (`locks/<token>`): JSON naming who holds which kind of lock.
 *
 *     { format: "deltadisk-repo-lock", version: 1, kind, purpose, host, pid, bootId,
 *       machineId?, netns, created, refreshed, token }
 *
 * `kind` is `shared` (backup, restore, check, stats, diff), `maintenance` (forget,
 * prune: excludes other maintenance, not backups) or `exclusive` (excludes all).
 * `refreshed` is rewritten every few minutes by a live holder; `token` (32 hex
 * digits) is also the file name and the name of the holder's liveness socket.
 */
import { DeltaDiskError } from '../errors.js';
import { HEX32 } from './framed.js';
import { MAX_LOCK_BYTES, REPO_FORMAT_VERSION } from './repo-limits.js';

export type LockKind = 'shared' | 'maintenance' | 'exclusive';

export interface RepoLockInfo {
  readonly kind: LockKind;
  readonly purpose: string;
  readonly host: string;
  readonly pid: number;
  readonly bootId: string;
  /** `/etc/machine-id` of the holder's machine; absent in locks of earlier writers. */
  readonly machineId?: string | undefined;
  readonly netns: string;
  readonly created: string;
  readonly refreshed: string;
  readonly token: string;
}

export function encodeRepoLock(l: RepoLockInfo): Buffer {
  return Buffer.from(`${JSON.stringify({ format: 'deltadisk-repo-lock', version: REPO_FORMAT_VERSION, ...l }, null, 2)}\n`);
}

/** @throws LOCK_INVALID for anything that is not a well-formed lock file. */
export function decodeRepoLock(bytes: Uint8Array, path?: string): RepoLockInfo {
  const bad = (): never => {
    throw new DeltaDiskError('LOCK_INVALID', `${path ?? 'lock file'} is not a valid repository lock`, { path });
  };
  if (bytes.length > MAX_LOCK_BYTES) bad();
  let v: unknown;
  try {
    v = JSON.parse(Buffer.from(bytes).toString('utf8'));
  } catch {
    return bad();
  }
  if (typeof v !== 'object' || v === null) return bad();
  const o = v as Record<string, unknown>;
  const strs = ['purpose', 'host', 'bootId', 'netns', 'created', 'refreshed'] as const;
  if (o.format !== 'deltadisk-repo-lock' || o.version !== REPO_FORMAT_VERSION) bad();
  if (o.kind !== 'shared' && o.kind !== 'maintenance' && o.kind !== 'exclusive') bad();
  if (typeof o.pid !== 'number' || !Number.isSafeInteger(o.pid) || typeof o.token !== 'string' || !HEX32.test(o.token)) bad();
  for (const k of strs) if (typeof o[k] !== 'string' || (o[k] as string).length > 1024) bad();
  if (o.machineId !== undefined && (typeof o.machineId !== 'string' || o.machineId.length > 1024)) bad();
  if (Number.isNaN(Date.parse(o.refreshed as string))) bad();
  return {
    kind: o.kind as LockKind,
    purpose: o.purpose as string,
    host: o.host as string,
    pid: o.pid as number,
    bootId: o.bootId as string,
    ...(o.machineId === undefined ? {} : { machineId: o.machineId as string }),
    netns: o.netns as string,
    created: o.created as string,
    refreshed: o.refreshed as string,
    token: o.token as string,
  };
}
