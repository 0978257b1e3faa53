/**
 * Which backup `latest` names in a repository several sources back up to, and the
 * retention rules `forget` takes besides the counts it always had: `restore latest`
 * takes restic's --host/--path/--tag, `vm restore latest` names the newest VM backup
 * (of the VM --vm names), never a later backup of plain files; `forget` takes
 * --keep-hourly, --keep-yearly and --keep-within (restic's 1y2m3d4h spans); and
 * `ls`, which names what a backup holds for restoring a part of it.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { makeChainVm } from '../../fixtures/make-fixtures.js';
import { ok, runCli } from '../helpers/cli.js';
import { jsonLines } from '../helpers/repo-cli.js';
import { tempDir } from '../helpers/temp-dir.js';

const MiB = 2 ** 20;
const t = tempDir('dd-latest-cli-');
afterAll(t.cleanup);

const idOf = (stdout: string): string => {
  const summary = jsonLines(stdout).find((l) => l.message_type === 'summary');
  return String(summary!.snapshot_id ?? summary!.backup_id ?? summary!.id);
};

describe('latest, narrowed', () => {
  it('restore latest takes --host, --path and --tag; vm restore latest takes the newest VM backup', async () => {
    const root = path.join(t.dir, 'latest');
    const vmDir = await makeChainVm(root, { sizes: [2 * MiB, 1 * MiB] });
    const repo = path.join(root, 'repo');
    const a = path.join(root, 'a');
    const b = path.join(root, 'b');
    fs.mkdirSync(a);
    fs.mkdirSync(b);
    fs.writeFileSync(path.join(a, 'which'), 'a');
    fs.writeFileSync(path.join(b, 'which'), 'b');
    await ok(['repo', 'init', repo]);
    const vmBackup = idOf((await ok(['--json', 'vm', 'backup', vmDir, '--repo', repo])).stdout);
    const aBackup = idOf((await ok(['--json', 'backup', a, '--repo', repo, '--tag', 'nightly'])).stdout);
    const bBackup = idOf((await ok(['--json', 'backup', b, '--repo', repo, '--host', 'db-host'])).stdout);
    expect(new Set([vmBackup, aBackup, bBackup]).size).toBe(3);

    const restored = async (args: string[]): Promise<string> => {
      const target = path.join(root, `t${Math.random().toString(16).slice(2)}`);
      const r = await ok(['--json', 'restore', 'latest', '--repo', repo, '--target', target, ...args]);
      return String(jsonLines(r.stdout).find((l) => l.message_type === 'summary')!.backup_id);
    };
    expect(await restored([])).toBe(bBackup);
    expect(await restored(['--path', a])).toBe(aBackup);
    expect(await restored(['--tag', 'nightly'])).toBe(aBackup);
    expect(await restored(['--host', 'db-host'])).toBe(bBackup);
    const none = await runCli(['restore', 'latest', '--repo', repo, '--target', path.join(root, 'none'), '--host', 'nowhere']);
    expect(none.code).toBe(10);
    expect(none.stderr).toContain('of host nowhere');

    // The newest backup is of plain files; a VM restore of "latest" still restores the VM.
    const vmTarget = path.join(root, 'vm-restored');
    const v = await ok(['--json', 'vm', 'restore', 'latest', '--repo', repo, '--target', vmTarget]);
    expect(JSON.stringify(jsonLines(v.stdout))).toContain(vmBackup);
    expect(fs.existsSync(path.join(vmTarget, 'web.vmx'))).toBe(true);
    const otherVm = await runCli(['vm', 'restore', 'latest', '--repo', repo, '--target', path.join(root, 'x'), '--vm', 'no-such-vm']);
    expect(otherVm.code).toBe(10);
  });
});

describe('forget rules', () => {
  it('takes --keep-hourly, --keep-yearly and --keep-within, and refuses a malformed span', async () => {
    const root = path.join(t.dir, 'forget');
    const repo = path.join(root, 'repo');
    const src = path.join(root, 'src');
    fs.mkdirSync(src, { recursive: true });
    fs.writeFileSync(path.join(src, 'f'), 'x');
    await ok(['repo', 'init', repo]);
    for (let i = 0; i < 3; i++) await ok(['backup', src, '--repo', repo]);
    const plan = async (args: string[]): Promise<{ keep: { reasons: string[] }[]; remove: unknown[] }> => {
      const r = await ok(['--json', 'forget', '--repo', repo, '--dry-run', ...args]);
      return (jsonLines(r.stdout)[0]!.groups as { keep: { reasons: string[] }[]; remove: unknown[] }[])[0]!;
    };
    // Three backups within a second or so: one kept per hour and per year (two if an
    // hour or a year turned between them).
    const hourly = await plan(['--keep-hourly', '5']);
    expect(hourly.keep.length).toBeLessThanOrEqual(2);
    for (const k of hourly.keep) expect(k.reasons).toEqual([expect.stringMatching(/^hourly /)]);
    expect((await plan(['--keep-yearly', '5'])).remove.length).toBeGreaterThanOrEqual(1);
    expect((await plan(['--keep-within', '1d'])).keep.map((k) => k.reasons)).toEqual([['within 1d'], ['within 1d'], ['within 1d']]);
    expect((await plan(['--keep-within', '0h'])).keep).toHaveLength(1);
    for (const bad of ['1w', 'd', '1d2y', '-1d', '']) {
      const r = await runCli(['forget', '--repo', repo, '--keep-within', bad, '--dry-run']);
      expect(r.code, bad).toBe(2);
      expect(r.stderr).toContain('not a span');
    }
  });
});

describe('ls', () => {
  it('lists what a backup holds, long, as JSON lines, and under given paths', async () => {
    const root = path.join(t.dir, 'ls');
    const repo = path.join(root, 'repo');
    const src = path.join(root, 'src');
    fs.mkdirSync(path.join(src, 'sub'), { recursive: true });
    fs.writeFileSync(path.join(src, 'sub', 'f'), 'hello');
    fs.chmodSync(path.join(src, 'sub', 'f'), 0o640);
    fs.symlinkSync('sub/f', path.join(src, 'link'));
    await ok(['create', path.join(src, 'disk.chain'), '--size', '1M']);
    await ok(['snapshot', 'create', path.join(src, 'disk.chain'), 'before']);
    await ok(['repo', 'init', repo]);
    await ok(['backup', src, '--repo', repo, '--chain-snapshots', 'all']);

    expect((await ok(['ls', 'latest', '--repo', repo])).stdout.split('\n').filter(Boolean)).toEqual(['src/', 'src/disk.chain', 'src/link', 'src/sub/', 'src/sub/f']);
    const long = (await ok(['ls', 'latest', '--repo', repo, '-l'])).stdout;
    expect(long).toMatch(/^-rw-r----- +5 B \d{4}-\d\d-\d\d \d\d:\d\d:\d\d {2}src\/sub\/f$/m);
    expect(long).toMatch(/^lrwxrwxrwx .* src\/link -> sub\/f$/m);
    expect(long).toMatch(/^D.* 1 MiB .* src\/disk\.chain {2}\(disk; snapshots: before\)$/m);
    const json = jsonLines((await ok(['--json', 'ls', 'latest', '--repo', repo, 'src/sub/'])).stdout);
    expect(json.map((l) => [l.path, l.type, l.size])).toEqual([
      ['src/sub', 'dir', undefined],
      ['src/sub/f', 'file', 5],
    ]);
    expect(json[1]!.mode).toBe(0o640);
    const missing = await runCli(['ls', 'latest', '--repo', repo, 'src/nope']);
    expect(missing.code).toBe(10);
    expect(missing.stderr).toContain('its top level: src');
  });
});
