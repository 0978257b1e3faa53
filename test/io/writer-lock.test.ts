/**
 * The writer lock: one holder per target, in this process or another; LOCKED names
 * the holder; a dead holder never blocks (the kernel frees the socket); a lock file
 * that cannot be read is LOCK_INVALID; `breakWriterLock` is the way out for lock
 * files whose holder cannot be checked, and refuses while a live holder exists.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { isDeltaDiskError } from '../../lib/errors.js';
import { MACHINE_ID } from '../../lib/io/host-identity.js';
import { acquireWriterLock, breakWriterLock, lockPathFor, readLockFile, type LockHolder, type WriterLock } from '../../lib/io/writer-lock.js';
import { holdInChild } from '../helpers/child-holder.js';
import { tempDir } from '../helpers/temp-dir.js';

let dir: string;
let cleanup: () => void;
let target: string;
const held: WriterLock[] = [];

beforeEach(() => {
  ({ dir, cleanup } = tempDir('deltadisk-lock-'));
  target = path.join(dir, 'disk.chain');
});
afterEach(async () => {
  for (const l of held.splice(0)) await l.release();
  cleanup();
});

async function acquire(purpose = 'test'): Promise<WriterLock> {
  const l = await acquireWriterLock(target, purpose);
  held.push(l);
  return l;
}

async function failure(p: Promise<unknown>): Promise<{ code: string; holder: unknown; message: string }> {
  try {
    await p;
  } catch (err) {
    if (isDeltaDiskError(err)) return { code: err.code, holder: err.holder, message: err.message };
    throw err;
  }
  return { code: 'no error', holder: undefined, message: '' };
}

const bootId = fs.readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
const netns = fs.readlinkSync('/proc/self/ns/net');

function plantLockFile(h: Partial<LockHolder>): void {
  const holder: LockHolder = {
    host: os.hostname(),
    pid: 999_999_999,
    bootId,
    netns,
    started: '2020-01-01T00:00:00.000Z',
    purpose: 'planted',
    token: 'feedface',
    ...h,
  };
  fs.writeFileSync(lockPathFor(target), JSON.stringify(holder));
}

describe('writer lock in one process', () => {
  it('writes a lock file naming the holder', async () => {
    const l = await acquire('open');
    expect(l.lockPath).toBe(`${target}.lock`);
    const h = readLockFile(l.lockPath) as LockHolder;
    expect(h).toMatchObject({ host: os.hostname(), pid: process.pid, purpose: 'open', bootId, netns });
    expect(h.token).toBe(l.holder.token);
  });

  it('a second acquisition is LOCKED and names the holder', async () => {
    await acquire('first');
    const f = await failure(acquireWriterLock(target, 'second'));
    expect(f.code).toBe('LOCKED');
    expect(f.holder).toMatchObject({ pid: process.pid, purpose: 'first' });
    expect(f.message).toContain(`pid ${process.pid}`);
  });

  it('release frees it, removes the lock file, and is idempotent', async () => {
    const l = await acquire();
    await l.release();
    await l.release();
    expect(fs.existsSync(lockPathFor(target))).toBe(false);
    const again = await acquire();
    expect(again.holder.token).not.toBe(l.holder.token);
  });

  it('of many racing acquisitions exactly one wins', async () => {
    const results = await Promise.allSettled(Array.from({ length: 12 }, (_, i) => acquireWriterLock(target, `racer ${i}`)));
    const winners = results.filter((r): r is PromiseFulfilledResult<WriterLock> => r.status === 'fulfilled');
    expect(winners).toHaveLength(1);
    held.push(winners[0]!.value);
    for (const r of results) if (r.status === 'rejected') expect(isDeltaDiskError(r.reason, 'LOCKED')).toBe(true);
  });

  it('two targets in one directory do not exclude each other', async () => {
    await acquire();
    const other = await acquireWriterLock(path.join(dir, 'other.chain'), 'x');
    await other.release();
  });

  it('release does not remove a lock file that is no longer its own', async () => {
    const l = await acquire();
    plantLockFile({ token: 'successor', pid: 1 });
    await l.release();
    expect((readLockFile(lockPathFor(target)) as LockHolder).token).toBe('successor');
  });
});

describe('lock files left behind', () => {
  it('a garbage lock file is LOCK_INVALID and is left for the operator', async () => {
    fs.writeFileSync(lockPathFor(target), 'not json at all');
    expect((await failure(acquireWriterLock(target, 'x'))).code).toBe('LOCK_INVALID');
    expect(fs.readFileSync(lockPathFor(target), 'utf8')).toBe('not json at all');
    // The failed attempt let go of the socket: a later attempt is not LOCKED by it.
    expect((await failure(acquireWriterLock(target, 'x'))).code).toBe('LOCK_INVALID');
  });

  it('a lock file with missing fields, a huge one, or a symlink are LOCK_INVALID too', async () => {
    fs.writeFileSync(lockPathFor(target), JSON.stringify({ host: 'h', pid: 1 }));
    expect((await failure(acquireWriterLock(target, 'x'))).code).toBe('LOCK_INVALID');
    fs.writeFileSync(lockPathFor(target), ' '.repeat(65 * 1024));
    expect((await failure(acquireWriterLock(target, 'x'))).code).toBe('LOCK_INVALID');
    fs.rmSync(lockPathFor(target));
    fs.symlinkSync('/etc/hostname', lockPathFor(target));
    expect((await failure(acquireWriterLock(target, 'x'))).code).toBe('LOCK_INVALID');
  });

  it('a lock file of a dead process on this host and namespace is taken over', async () => {
    plantLockFile({});
    const l = await acquire('taker');
    expect((readLockFile(l.lockPath) as LockHolder).purpose).toBe('taker');
  });

  it.runIf(MACHINE_ID !== 'unknown')('a lock file from before a reboot of this machine is taken over', async () => {
    plantLockFile({ bootId: 'another-boot', machineId: MACHINE_ID, netns: 'net:[1]' });
    await acquire();
  });

  // Two machines of one host name sharing the directory (NFS, cloned VMs): another boot
  // id proves a reboot only when the machine id is ours too. Before, the namesake's
  // live lock was taken over and two writers wrote one disk.
  it.each([
    ['another machine of the same host name', { machineId: 'f'.repeat(32) }],
    ['a lock that does not record its machine', {}],
  ])('a lock file of another boot of %s is LOCKED', async (_what, h) => {
    plantLockFile({ bootId: 'another-boot', ...h });
    const f = await failure(acquireWriterLock(target, 'x'));
    expect(f.code).toBe('LOCKED');
    expect(f.holder).toMatchObject({ bootId: 'another-boot' });
  });

  it('records the machine id in its lock file', async () => {
    const l = await acquire();
    expect((readLockFile(l.lockPath) as LockHolder).machineId).toBe(MACHINE_ID);
  });

  it('a lock file from another host is LOCKED (it cannot be checked), until unlocked', async () => {
    plantLockFile({ host: 'some-other-host', pid: 1234 });
    const f = await failure(acquireWriterLock(target, 'x'));
    expect(f.code).toBe('LOCKED');
    expect(f.holder).toMatchObject({ host: 'some-other-host', pid: 1234 });
    expect(f.message).toContain('deltadisk unlock');
    const removed = await breakWriterLock(target);
    expect(removed).toMatchObject({ host: 'some-other-host' });
    await acquire();
  });

  it('a lock file from another network namespace is LOCKED, until unlocked', async () => {
    plantLockFile({ netns: 'net:[4026531999]' });
    expect((await failure(acquireWriterLock(target, 'x'))).code).toBe('LOCKED');
    await breakWriterLock(target);
    await acquire();
  });
});

describe('breakWriterLock', () => {
  it('does nothing when there is no lock', async () => {
    expect(await breakWriterLock(target)).toBeUndefined();
  });

  it('removes a garbage lock file', async () => {
    fs.writeFileSync(lockPathFor(target), '{{{');
    expect(await breakWriterLock(target)).toBe('garbage');
    expect(fs.existsSync(lockPathFor(target))).toBe(false);
  });

  it('refuses while a holder in this process is alive', async () => {
    await acquire('busy');
    const f = await failure(breakWriterLock(target));
    expect(f.code).toBe('LOCKED');
    expect(f.holder).toMatchObject({ pid: process.pid, purpose: 'busy' });
    expect(fs.existsSync(lockPathFor(target))).toBe(true);
  });
});

describe('writer lock across processes', () => {
  it('a lock held by another process is LOCKED naming that process; free once it lets go', async () => {
    const child = await holdInChild(target, 'lock');
    try {
      const f = await failure(acquireWriterLock(target, 'x'));
      expect(f.code).toBe('LOCKED');
      expect(f.holder).toMatchObject({ pid: child.pid, purpose: 'test holder' });
      expect((await failure(breakWriterLock(target))).code).toBe('LOCKED');
    } finally {
      await child.release();
    }
    await acquire();
  });

  it('a holder killed with SIGKILL blocks nobody: its leftover lock file is taken over', async () => {
    const child = await holdInChild(target, 'lock');
    await child.kill();
    expect((readLockFile(lockPathFor(target)) as LockHolder).pid).toBe(child.pid);
    const l = await acquire('after the crash');
    expect((readLockFile(l.lockPath) as LockHolder).pid).toBe(process.pid);
  });
});
