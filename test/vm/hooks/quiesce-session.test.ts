import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { planHooks, type HookSpec } from '../../../lib/vm/hooks/hook-plan.js';
import { QuiesceSession, withQuiesce } from '../../../lib/vm/hooks/quiesce-session.js';
import { tempDir } from '../../helpers/temp-dir.js';

const t = tempDir('dd-hooks-');
afterAll(t.cleanup);
let n = 0;

/** A hooks dir whose scripts append "<name> <phase>" to a marker file; `body` adds behaviour per script. */
function hooksDir(scripts: Record<string, string>): { dir: string; marker: string; events: () => string[] } {
  const dir = path.join(t.dir, `case-${n++}`);
  fs.mkdirSync(path.join(dir, 'hooks'), { recursive: true });
  const marker = path.join(dir, 'marker');
  for (const [name, body] of Object.entries(scripts)) {
    const p = path.join(dir, 'hooks', name);
    fs.writeFileSync(p, `#!/bin/sh\necho "${name} $1" >> "${marker}"\n${body}\n`);
    fs.chmodSync(p, 0o755);
  }
  return { dir: path.join(dir, 'hooks'), marker, events: () => (fs.existsSync(marker) ? fs.readFileSync(marker, 'utf8').trim().split('\n') : []) };
}

const env = { vmDir: '/vms/x', vmx: 'x.vmx', vmName: 'x', backupId: 'b-1', operation: 'backup' };

async function session(spec: HookSpec, signal?: AbortSignal): Promise<QuiesceSession> {
  return new QuiesceSession(await planHooks(spec), env, { killGraceMs: 300, ...(signal === undefined ? {} : { signal }) });
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('quiesce hooks', () => {
  it('runs pre-freeze, scripts in byte order with freeze, then reverse with thaw, post-thaw last; tells the hook its context', async () => {
    const h = hooksDir({ '20-b': '', '10-a': 'echo "env $DELTADISK_VM_DIR $DELTADISK_BACKUP_ID $DELTADISK_HOOK_PHASE $DELTADISK_OPERATION" >> "$(dirname "$0")/../env"', '9-c': '' });
    fs.writeFileSync(path.join(h.dir, 'notes.txt'), 'not executable');
    fs.writeFileSync(path.join(h.dir, '30-d~'), '#!/bin/sh\nexit 1\n', { mode: 0o755 });
    const s = await session({ hooksDir: h.dir, preFreeze: `echo "pre $1" >> "${h.marker}"`, postThaw: `echo "post $1" >> "${h.marker}"` });
    expect(s.plan.skipped.map((x) => [x.name, x.reason])).toEqual([
      ['30-d~', 'backup or hidden file'],
      ['notes.txt', 'not executable'],
    ]);
    const result = await withQuiesce(s, async (q) => {
      expect(h.events()).toEqual(['pre freeze', '10-a freeze', '20-b freeze', '9-c freeze']);
      return q;
    });
    expect(result).toBe(true);
    expect(s.quiesced).toBe(true);
    expect(h.events()).toEqual(['pre freeze', '10-a freeze', '20-b freeze', '9-c freeze', '9-c thaw', '20-b thaw', '10-a thaw', 'post thaw']);
    expect(fs.readFileSync(path.join(h.dir, '..', 'env'), 'utf8').trim().split('\n')).toEqual(['env /vms/x b-1 freeze backup', 'env /vms/x b-1 thaw backup']);
    expect(s.outcomes.every((o) => o.ok)).toBe(true);
    await s.thaw();
    expect(h.events()).toHaveLength(8); // thaw runs once
  });

  it('a failing freeze script: the ones that ran get freezeFail in reverse, the failing one is not called again, required mode aborts', async () => {
    const h = hooksDir({ a: '', b: '', c: '[ "$1" = freeze ] && exit 3; exit 0', d: '' });
    const s = await session({ hooksDir: h.dir, postThaw: `echo "post $1" >> "${h.marker}"` });
    await expect(withQuiesce(s, async () => 'captured')).rejects.toThrow(expect.objectContaining({ code: 'HOOK_FAILED', message: expect.stringMatching(/freeze hook c exited with 3/) }));
    expect(h.events()).toEqual(['a freeze', 'b freeze', 'c freeze', 'b freezeFail', 'a freezeFail', 'post freezeFail']);
  });

  it('optional mode continues unquiesced after a failed freeze, and thaws nothing twice', async () => {
    const h = hooksDir({ a: '', b: 'exit 1' });
    const s = await session({ hooksDir: h.dir, quiesce: 'optional' });
    const q = await withQuiesce(s, async (quiesced) => quiesced);
    expect(q).toBe(false);
    expect(s.quiesced).toBe(false);
    expect(s.failure).toMatch(/freeze hook b exited with 1/);
    expect(h.events()).toEqual(['a freeze', 'b freeze', 'a freezeFail']);
  });

  it('a freeze hook that times out is killed with its whole process group, and gets freezeFail with the others', async () => {
    const h = hooksDir({ a: '', b: `if [ "$1" = freeze ]; then sleep 60 & echo $! > "$(dirname "$0")/../child"; trap '' TERM; sleep 60; fi` });
    const s = await session({ hooksDir: h.dir, timeoutMs: 400 });
    const t0 = Date.now();
    await expect(withQuiesce(s, async () => undefined)).rejects.toThrow(/timed out after 400 ms/);
    expect(Date.now() - t0).toBeLessThan(5000);
    const child = Number(fs.readFileSync(path.join(h.dir, '..', 'child'), 'utf8'));
    await new Promise((r) => setTimeout(r, 100));
    expect(alive(child)).toBe(false);
    expect(h.events()).toEqual(['a freeze', 'b freeze', 'b freezeFail', 'a freezeFail']);
    expect(s.outcomes.find((o) => o.phase === 'freeze' && o.hook === 'b')).toMatchObject({ ok: false, timedOut: true });
  });

  it('thaw runs when the work between freeze and thaw fails', async () => {
    const h = hooksDir({ a: '' });
    const s = await session({ hooksDir: h.dir });
    await expect(withQuiesce(s, async () => { throw new Error('capture broke'); })).rejects.toThrow('capture broke');
    expect(h.events()).toEqual(['a freeze', 'a thaw']);
  });

  it('an abort while a freeze hook runs kills it; everything that began to freeze gets freezeFail; INTERRUPTED', async () => {
    const h = hooksDir({ a: '', b: '[ "$1" = freeze ] && sleep 30; exit 0', c: '' });
    const ac = new AbortController();
    const s = await session({ hooksDir: h.dir }, ac.signal);
    setTimeout(() => ac.abort(), 300);
    await expect(withQuiesce(s, async () => undefined)).rejects.toThrow(expect.objectContaining({ code: 'INTERRUPTED' }));
    expect(h.events()).toEqual(['a freeze', 'b freeze', 'b freezeFail', 'a freezeFail']);
  });

  it('an abort after freezing does not stop the thaw hooks', async () => {
    const h = hooksDir({ a: '[ "$1" = thaw ] && sleep 0.3; exit 0', b: '' });
    const ac = new AbortController();
    const s = await session({ hooksDir: h.dir }, ac.signal);
    await withQuiesce(s, async () => ac.abort());
    expect(h.events()).toEqual(['a freeze', 'b freeze', 'b thaw', 'a thaw']);
    expect(s.outcomes.every((o) => o.ok)).toBe(true);
  });

  it('a failing thaw hook does not stop the others; output is captured, bounded, and logged', async () => {
    const h = hooksDir({ a: '', b: '[ "$1" = thaw ] && { echo to-stderr >&2; exit 4; }; head -c 100000 /dev/zero | tr "\\0" x; echo END' });
    const lines: string[] = [];
    const s = new QuiesceSession(await planHooks({ hooksDir: h.dir }), env, { onLog: (e) => lines.push(`${e.hook}:${e.stream}`) });
    await withQuiesce(s, async () => undefined);
    expect(h.events()).toEqual(['a freeze', 'b freeze', 'b thaw', 'a thaw']);
    expect(s.thawFailed).toBe(true);
    const big = s.outcomes.find((o) => o.hook === 'b' && o.phase === 'freeze')!;
    expect(big.outputTruncated).toBe(true);
    expect(big.output.length).toBeLessThan(70_000);
    expect(big.output).toMatch(/bytes of output omitted/);
    expect(big.output.trimEnd().endsWith('END')).toBe(true);
    expect(s.outcomes.find((o) => o.hook === 'b' && o.phase === 'thaw')).toMatchObject({ ok: false, exitCode: 4, output: 'to-stderr\n' });
    expect(lines).toContain('b:stderr');
  });

  it('a pre-freeze command that cannot run fails the freeze; validation of the spec', async () => {
    const s = await session({ preFreeze: 'exit 127' });
    await expect(s.freeze()).rejects.toThrow(/pre-freeze exited with 127/);
    await expect(planHooks({ timeoutMs: 0 })).rejects.toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
    await expect(planHooks({ preFreeze: ' ' })).rejects.toThrow(/empty/);
    await expect(planHooks({ hooksDir: path.join(t.dir, 'none') })).rejects.toThrow(expect.objectContaining({ code: 'NOT_FOUND' }));
  });
});
