/**
 * Repository locks: which kinds exclude which, a SIGKILLed holder proven gone, stale
 * locks of holders we cannot check, unreadable lock files, and a holder whose lock
 * was removed stopping before it publishes anything, or one that went unrefreshed
 * longer than a lock stays valid (by either clock) stopping even after a late
 * refresh succeeds.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { backup, breakRepoLocks, listLocks, Repository } from '../../lib/index.js';
import { encodeRepoLock } from '../../lib/format/repo-lock.js';
import { LOCK_VALID_MS } from '../../lib/repo/repo-lock.js';
import { HOST, MACHINE_ID } from '../../lib/repo/liveness.js';
import { writeTree } from '../helpers/repo.js';
import { tempDir } from '../helpers/temp-dir.js';

const DIST = path.resolve(import.meta.dirname, '../../dist/lib/index.js');
let dir: string;
let cleanup: () => void;
let repoDir: string;

beforeEach(async () => {
  ({ dir, cleanup } = tempDir('deltadisk-lock-'));
  repoDir = path.join(dir, 'repo');
  await Repository.init(repoDir);
});
afterEach(() => {
  vi.useRealTimers();
  cleanup();
});

function foreignLock(refreshedMsAgo: number, token = 'ab'.repeat(16)): void {
  const t = new Date(Date.now() - refreshedMsAgo).toISOString();
  fs.writeFileSync(path.join(repoDir, 'locks', token), encodeRepoLock({ kind: 'exclusive', purpose: 'prune', host: 'elsewhere.example', pid: 42, bootId: 'x', netns: 'y', created: t, refreshed: t, token }));
}

describe('repository locks', () => {
  it('lets shared locks coexist, and excludes what must be excluded', async () => {
    const a = await Repository.open(repoDir, { lock: 'shared' });
    const b = await Repository.open(repoDir, { lock: 'shared' });
    const m = await Repository.open(repoDir, { lock: 'maintenance', purpose: 'prune' });
    await expect(Repository.open(repoDir, { lock: 'maintenance' })).rejects.toMatchObject({ code: 'LOCKED', holder: { kind: 'maintenance', purpose: 'prune', pid: process.pid } });
    await expect(Repository.open(repoDir, { lock: 'exclusive' })).rejects.toMatchObject({ code: 'LOCKED' });
    await m.close();
    await expect(Repository.open(repoDir, { lock: 'exclusive' })).rejects.toMatchObject({ code: 'LOCKED' });
    await a.close();
    await b.close();
    const x = await Repository.open(repoDir, { lock: 'exclusive' });
    await expect(Repository.open(repoDir, { lock: 'shared' })).rejects.toMatchObject({ code: 'LOCKED' });
    await x.close();
    expect(fs.readdirSync(path.join(repoDir, 'locks'))).toEqual([]);
  });

  it('proves a SIGKILLed holder gone and takes over its lock', async () => {
    const child = spawn(process.execPath, ['--input-type=module', '-e', `
      import { Repository } from ${JSON.stringify(DIST)};
      await Repository.open(${JSON.stringify(repoDir)}, { lock: 'exclusive', purpose: 'doomed' });
      console.log('locked');
      setInterval(() => {}, 1000);
    `]);
    await new Promise<void>((resolve, reject) => {
      child.stdout.on('data', (d: Buffer) => d.toString().includes('locked') && resolve());
      child.on('exit', () => reject(new Error('child exited early')));
    });
    await expect(Repository.open(repoDir, { lock: 'shared' })).rejects.toMatchObject({ code: 'LOCKED', holder: { purpose: 'doomed' } });
    child.kill('SIGKILL');
    await new Promise((r) => child.on('exit', r));
    expect(fs.readdirSync(path.join(repoDir, 'locks'))).toHaveLength(1);
    expect((await listLocks((await Repository.open(repoDir, { lock: false })).backend))[0]!.state).toBe('dead');
    const r = await Repository.open(repoDir, { lock: 'exclusive' });
    await r.close();
    expect(fs.readdirSync(path.join(repoDir, 'locks'))).toEqual([]);
  });

  // Another boot id proves the holder gone only on this machine: a namesake host
  // sharing the repository (NFS, cloned VMs) runs its backup on. Before, its live lock
  // counted as dead, and a prune here could delete the chunks its backup was storing.
  it.each([
    ['this machine before a reboot', { machineId: MACHINE_ID }, 'dead'],
    ['another machine of this host name', { machineId: 'f'.repeat(32) }, 'live'],
    ['a holder that did not record its machine', {}, 'live'],
  ] as const)('judges a recent lock of another boot of %s', async (what, h, state) => {
    if (MACHINE_ID === 'unknown' && state === 'dead') return;
    const t = new Date().toISOString();
    const token = 'cd'.repeat(16);
    fs.writeFileSync(path.join(repoDir, 'locks', token), encodeRepoLock({ kind: 'exclusive', purpose: 'prune', host: HOST, pid: process.pid, bootId: 'another-boot', ...h, netns: 'y', created: t, refreshed: t, token }));
    const plain = await Repository.open(repoDir, { lock: false });
    expect((await listLocks(plain.backend))[0]!.state, what).toBe(state);
    if (state === 'live') await expect(Repository.open(repoDir, { lock: 'shared' })).rejects.toMatchObject({ code: 'LOCKED' });
    else await (await Repository.open(repoDir, { lock: 'shared' })).close();
  });

  it('records the machine id in its lock file', async () => {
    const r = await Repository.open(repoDir, { lock: 'shared' });
    const [name] = fs.readdirSync(path.join(repoDir, 'locks'));
    expect(JSON.parse(fs.readFileSync(path.join(repoDir, 'locks', name!), 'utf8'))).toMatchObject({ host: HOST, machineId: MACHINE_ID });
    await r.close();
  });

  it('honours a recent lock of another host, ignores a stale one, and unlock removes only the stale', async () => {
    foreignLock(60_000);
    await expect(Repository.open(repoDir, { lock: 'shared' })).rejects.toMatchObject({ code: 'LOCKED' });
    const plain = await Repository.open(repoDir, { lock: false });
    expect(await breakRepoLocks(plain.backend, false)).toEqual([]);
    foreignLock(31 * 60_000, 'cd'.repeat(16));
    fs.unlinkSync(path.join(repoDir, 'locks', 'ab'.repeat(16)));
    const r = await Repository.open(repoDir, { lock: 'exclusive' });
    await r.close();
    expect((await breakRepoLocks(plain.backend, false)).map((l) => l.state)).toEqual(['stale']);
    foreignLock(0);
    expect((await breakRepoLocks(plain.backend, true)).map((l) => l.state)).toEqual(['live']);
    await plain.close();
  });

  it('blocks on an unreadable lock file until unlock removes it', async () => {
    fs.writeFileSync(path.join(repoDir, 'locks', 'ef'.repeat(16)), '{ not json');
    await expect(Repository.open(repoDir, { lock: 'shared' })).rejects.toMatchObject({ code: 'LOCK_INVALID' });
    const plain = await Repository.open(repoDir, { lock: false });
    expect((await breakRepoLocks(plain.backend, false)).map((l) => l.state)).toEqual(['invalid']);
    await plain.close();
    await (await Repository.open(repoDir, { lock: 'shared' })).close();
  });

  it('waits for a lock with retryLockMs', async () => {
    const x = await Repository.open(repoDir, { lock: 'exclusive' });
    setTimeout(() => void x.close(), 300);
    const r = await Repository.open(repoDir, { lock: 'shared', retryLockMs: 5000 });
    await r.close();
  });

  it('a holder unrefreshed past LOCK_VALID_MS stays lost, even after a refresh succeeds', async () => {
    // A prune elsewhere may have judged the lock stale meanwhile and deleted what the
    // holder is about to reference. Both clocks: an outage the monotonic clock sees,
    // and a suspended machine, whose monotonic clock stood still while others' ran.
    for (const clock of ['performance', 'Date'] as const) {
      vi.useFakeTimers({ toFake: [clock], now: Date.now() });
      const repo = await Repository.open(repoDir, { lock: 'shared', purpose: 'backup' });
      try {
        await repo.lock!.refresh();
        await repo.lock!.assertValid();
        vi.advanceTimersByTime(LOCK_VALID_MS + 60_000);
        await repo.lock!.refresh(); // the file system is back: the write would succeed
        await expect(repo.lock!.assertValid(), clock).rejects.toMatchObject({ code: 'LOCK_LOST' });
      } finally {
        await repo.close();
        vi.useRealTimers();
      }
    }
    // Within the validity, nothing is lost.
    vi.useFakeTimers({ toFake: ['performance', 'Date'], now: Date.now() });
    const repo = await Repository.open(repoDir, { lock: 'shared', purpose: 'backup' });
    vi.advanceTimersByTime(LOCK_VALID_MS - 60_000);
    await repo.lock!.refresh();
    vi.advanceTimersByTime(LOCK_VALID_MS - 60_000);
    await repo.lock!.assertValid();
    await repo.close();
  });

  it('stops a backup whose lock was removed before it publishes', async () => {
    writeTree(path.join(dir, 'src'), { f: 'data' });
    const repo = await Repository.open(repoDir, { lock: 'shared', purpose: 'backup' });
    try {
      for (const f of fs.readdirSync(path.join(repoDir, 'locks'))) fs.unlinkSync(path.join(repoDir, 'locks', f));
      await expect(backup(repo, [path.join(dir, 'src')])).rejects.toMatchObject({ code: 'LOCK_LOST' });
      expect(fs.readdirSync(path.join(repoDir, 'snapshots'))).toEqual([]);
    } finally {
      await repo.close();
    }
  });
});
