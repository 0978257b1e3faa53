/**
 * runHook's promises: it never throws (a hook that cannot start is a failed
 * outcome), its outcome is final shortly after the hook exits even when a
 * background process keeps the output pipes open, and a hook it stops leaves no
 * process behind, not even one that ignores SIGTERM. Real processes throughout.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { planHooks } from '../../../lib/vm/hooks/hook-plan.js';
import { QuiesceSession } from '../../../lib/vm/hooks/quiesce-session.js';
import { runHook } from '../../../lib/vm/hooks/run-hook.js';
import { tempDir } from '../../helpers/temp-dir.js';

const t = tempDir('dd-run-hook-');
const started: number[] = [];
afterAll(() => {
  // Whatever a failing run left behind (the hooks run in their own process groups).
  for (const pid of started) {
    for (const target of [-pid, pid]) {
      try {
        process.kill(target, 'SIGKILL');
      } catch {
        /* gone, or not a group leader */
      }
    }
  }
  t.cleanup();
});
let n = 0;

function file(): string {
  return path.join(t.dir, `f${n++}`);
}

/** Alive and not a zombie (an orphan's zombie may linger where PID 1 does not reap). */
function alive(pid: number): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return !/^\d+ \(.*\) [ZX]/.test(stat);
  } catch {
    return false;
  }
}

async function readPid(p: string): Promise<number> {
  for (let i = 0; i < 100 && !(fs.existsSync(p) && fs.readFileSync(p, 'utf8').trim() !== ''); i++) await new Promise((r) => setTimeout(r, 20));
  const pid = Number(fs.readFileSync(p, 'utf8').trim());
  started.push(pid);
  return pid;
}

async function waitDead(pid: number, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (!alive(pid)) return true;
    await new Promise((r) => setTimeout(r, 25));
  }
  return !alive(pid);
}

const cmd = (command: string) => ({ kind: 'command' as const, name: 'pre-freeze', command });

describe('runHook', () => {
  it('finishes soon after the hook exits although a background process keeps its output open', async () => {
    const pidFile = file();
    const t0 = Date.now();
    const o = await runHook(cmd(`sleep 20 & echo $! > "${pidFile}"; exit 0`), { phase: 'freeze', env: {}, timeoutMs: 10_000 });
    expect(o.ok).toBe(true);
    expect(Date.now() - t0).toBeLessThan(3000);
    // Left alone on success (a freeze hook may keep a lock holder until thaw).
    expect(alive(await readPid(pidFile))).toBe(true);
  }, 8000);

  it('after a timeout, kills a descendant that ignores SIGTERM (hook itself dies on SIGTERM)', async () => {
    const pidFile = file();
    const o = await runHook(cmd(`(trap "" TERM; exec sleep 30) & echo $! > "${pidFile}"; sleep 30`), { phase: 'freeze', env: {}, timeoutMs: 300, killGraceMs: 5000 });
    expect(o.timedOut).toBe(true);
    expect(o.ok).toBe(false);
    expect(await waitDead(await readPid(pidFile), 1500)).toBe(true);
  }, 8000);

  it('after a timeout, kills a hook that ignores SIGTERM itself, after the grace period', async () => {
    const pidFile = file();
    const t0 = Date.now();
    void readPid(`${pidFile}.group`);
    const o = await runHook(cmd(`echo $$ > "${pidFile}.group"; trap "" TERM; (exec sleep 30) & echo $! > "${pidFile}"; sleep 30; sleep 30`), { phase: 'freeze', env: {}, timeoutMs: 300, killGraceMs: 300 });
    expect(o.timedOut).toBe(true);
    expect(Date.now() - t0).toBeLessThan(4000);
    expect(await waitDead(await readPid(pidFile), 1500)).toBe(true);
  }, 10_000);

  it('a hook that cannot be spawned (NUL in the command) is a failed outcome, not an exception', async () => {
    const o = await runHook(cmd('true\0'), { phase: 'freeze', env: {}, timeoutMs: 1000 });
    expect(o.ok).toBe(false);
    expect(o.error).toEqual(expect.any(String));
  });

  it('a NUL in an environment value is replaced, not a spawn failure', async () => {
    const out = file();
    const o = await runHook(cmd(`printf '%s' "$X" > "${out}"`), { phase: 'freeze', env: { X: 'a\0b' }, timeoutMs: 5000 });
    expect(o.ok).toBe(true);
    expect(fs.readFileSync(out, 'utf8')).toBe('a\uFFFDb');
  });
});

describe('QuiesceSession with hostile VM metadata', () => {
  it('a NUL in the display name neither breaks freeze nor skips thaw', async () => {
    const marker = file();
    const plan = await planHooks({ preFreeze: `printf 'freeze %s\\n' "$DELTADISK_VM_NAME" >> "${marker}"`, postThaw: `echo thaw >> "${marker}"` });
    const s = new QuiesceSession(plan, { vmDir: '/vms/x', vmx: 'x.vmx', vmName: 'bad\0name', backupId: 'b', operation: 'snapshot' }, { killGraceMs: 300 });
    try {
      expect(await s.freeze()).toBe(true);
    } finally {
      await s.thaw();
    }
    expect(s.state).toBe('thawed');
    expect(fs.readFileSync(marker, 'utf8')).toBe('freeze bad\uFFFDname\nthaw\n');
  });

  it('a freeze hook that cannot be spawned fails the freeze with a typed error, not a crash', async () => {
    const plan = await planHooks({ preFreeze: 'true\0', quiesce: 'required' });
    const s = new QuiesceSession(plan, { vmDir: '/vms/x', vmx: 'x.vmx', vmName: 'x', backupId: 'b', operation: 'snapshot' }, { killGraceMs: 300 });
    await expect(s.freeze().finally(() => s.thaw())).rejects.toMatchObject({ code: 'HOOK_FAILED' });
    expect(s.state).toBe('unquiesced');
    expect(s.outcomes[0]!.ok).toBe(false);
    expect(s.outcomes[0]!.error).toEqual(expect.any(String));
  });
});
