/**
 * `deltadisk unlock` as a real process: no lock, a garbage lock file, a lock from
 * another host, and the refusal while a live writer holds the disk.
 */
import fs from 'node:fs';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { holdInChild } from '../helpers/child-holder.js';
import { ok, runCli } from '../helpers/cli.js';
import { cliFixture } from '../helpers/cli-fixture.js';
import { tempDir } from '../helpers/temp-dir.js';

let dir: string;
let cleanup: () => void;
let file: string;

beforeEach(async () => {
  ({ dir, cleanup } = tempDir('deltadisk-cli-unlock-'));
  ({ file } = await cliFixture(dir));
});
afterEach(() => cleanup());

describe('deltadisk unlock', () => {
  const lockFile = () => `${file}.lock`;

  it('says so when there is no lock (exit 0)', async () => {
    expect((await ok(['unlock', file])).stdout).toBe(`${file} was not locked\n`);
    expect(JSON.parse((await ok(['unlock', file, '--json'])).stdout)).toEqual({ removed: null });
  });

  it('a garbage lock file blocks writers with exit 11 (LOCK_INVALID) until unlock removes it', async () => {
    fs.writeFileSync(lockFile(), 'garbage');
    const blocked = await runCli(['io', file, '-c', 'write -P 1 0 1']);
    expect(blocked.code).toBe(11);
    expect(blocked.stderr).toContain('[LOCK_INVALID]');
    expect(blocked.stderr).toContain('deltadisk unlock');
    const r = await ok(['unlock', file, '--json']);
    expect(JSON.parse(r.stdout)).toEqual({ removed: 'garbage' });
    expect(fs.existsSync(lockFile())).toBe(false);
    await ok(['io', file, '-c', 'write -P 1 0 1']);
  });

  it('a lock left by a process on another host is LOCKED (exit 11) until unlock removes it', async () => {
    fs.writeFileSync(
      lockFile(),
      JSON.stringify({ host: 'elsewhere', pid: 4242, bootId: 'b', netns: 'n', started: '2024-01-01T00:00:00.000Z', purpose: 'open', token: 't' }),
    );
    const blocked = await runCli(['snapshot', 'create', file, 'x']);
    expect(blocked.code).toBe(11);
    expect(blocked.stderr).toContain('pid 4242 on elsewhere');
    const r = await ok(['unlock', file]);
    expect(r.stdout).toMatch(/^removed the lock of pid 4242 on elsewhere \(open, since 2024-01-01T00:00:00.000Z\)\n$/);
    await ok(['snapshot', 'create', file, 'x']);
  });

  it('refuses while a live writer holds the disk (exit 11)', async () => {
    const holder = await holdInChild(file, 'disk');
    try {
      const r = await runCli(['unlock', file]);
      expect(r.code).toBe(11);
      expect(r.stderr).toContain('[LOCKED]');
      expect(fs.existsSync(lockFile())).toBe(true);
    } finally {
      await holder.release();
    }
  });
});
