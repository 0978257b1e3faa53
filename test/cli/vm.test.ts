import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Disk } from '../../lib/chain/disk.js';
import { parseVmsd } from '../../lib/vm/vmsd-file.js';
import { makeChainVm, makeTrickyVm } from '../../fixtures/make-fixtures.js';
import { waitFor } from '../helpers/wait-for.js';
import { tempDir } from '../helpers/temp-dir.js';

const CLI = path.resolve(import.meta.dirname, '../../dist/deltadisk.cjs');
const t = tempDir('dd-cli-vm-');
afterAll(t.cleanup);
let n = 0;

function run(...args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8' });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

async function chainVm(): Promise<{ root: string; dir: string }> {
  const root = path.join(t.dir, `r${n++}`);
  return { root, dir: await makeChainVm(root, { sizes: [4 * 2 ** 20, 4 * 2 ** 20], writtenBlocks: 4 }) };
}

/** A hooks dir: each script appends "<name> <phase>" to the marker, then runs `body`. */
function hooks(root: string, scripts: Record<string, string>): { dir: string; events: () => string[] } {
  const dir = path.join(root, 'hooks');
  fs.mkdirSync(dir, { recursive: true });
  const marker = path.join(root, 'marker');
  for (const [name, body] of Object.entries(scripts)) fs.writeFileSync(path.join(dir, name), `#!/bin/sh\necho "${name} $1" >> "${marker}"\n${body}\n`, { mode: 0o755 });
  return { dir, events: () => (fs.existsSync(marker) ? fs.readFileSync(marker, 'utf8').trim().split('\n') : []) };
}

async function diskSnapshots(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const f of ['system.chain', 'data1.chain']) {
    const d = await Disk.open(path.join(dir, f), { readOnly: true });
    out.push(...d.snapshots().map((s) => `${f}:${s.name}`));
    await d.close();
  }
  return out;
}


describe('deltadisk vm inspect', () => {
  it('prints findings and exits 0 even with problems; --json gives the inventory; a missing VM exits 10', () => {
    const { dir, outsideDir } = makeTrickyVm(path.join(t.dir, `r${n++}`));
    const human = run('vm', 'inspect', dir);
    expect(human.code).toBe(0);
    expect(human.stdout).toMatch(/CID_MISMATCH/);
    expect(human.stdout).toMatch(/NOT INCLUDED/);
    const json = run('--json', 'vm', 'inspect', dir);
    expect(json.code).toBe(0);
    const inv = JSON.parse(json.stdout) as { problems: { code: string }[]; disks: { node: string; included: boolean }[] };
    expect(inv.problems.map((p) => p.code)).toContain('OUTSIDE_DIRECTORY');
    const allowed = JSON.parse(run('--json', '--allow-path', outsideDir, 'vm', 'inspect', dir).stdout) as typeof inv;
    expect(allowed.disks.find((d) => d.node === 'scsi0:1')?.included).toBe(true);
    expect(run('vm', 'inspect', path.join(t.dir, 'nope')).code).toBe(10);
  });
});

describe('deltadisk vm snapshot', () => {
  it('create with hooks, list, revert (with confirmation), delete', async () => {
    const { root, dir } = await chainVm();
    const h = hooks(root, { '10-db': 'echo "flushed $DELTADISK_OPERATION"' });
    const c = run('--json', 'vm', 'snapshot', 'create', dir, 'one', '--hooks-dir', h.dir, '-d', 'first');
    expect(c.code).toBe(0);
    const r = JSON.parse(c.stdout) as { uid: number; consistency: string; freezeWindowMs: number; hooks: { output: string }[] };
    expect(r).toMatchObject({ uid: 1, consistency: 'quiesced' });
    expect(r.hooks[0]!.output).toBe('flushed snapshot\n');
    expect(h.events()).toEqual(['10-db freeze', '10-db thaw']);
    expect(run('vm', 'snapshot', 'create', dir, 'two').code).toBe(0);
    const list = run('vm', 'snapshot', 'list', dir).stdout.split('\n');
    expect(list[0]).toMatch(/^ {2}one {2}#1 /);
    expect(list[1]).toMatch(/^ {4}\* two {2}#2 /);
    const refused = run('vm', 'snapshot', 'revert', dir, 'one');
    expect(refused.code).toBe(2);
    expect(run('vm', 'snapshot', 'revert', dir, 'one', '--dry-run').stdout).toMatch(/would revert/);
    expect(run('-y', 'vm', 'snapshot', 'revert', dir, 'one').code).toBe(0);
    expect(parseVmsd(fs.readFileSync(path.join(dir, 'web.vmsd'))).current).toBe(1);
    expect(run('-y', 'vm', 'snapshot', 'delete', dir, '#2').code).toBe(0);
    expect(await diskSnapshots(dir)).toEqual(['system.chain:vm-snapshot-1', 'data1.chain:vm-snapshot-1']);
    expect(run('-y', 'vm', 'snapshot', 'delete', dir, 'nope').code).toBe(10);
  });

  it('a failing freeze hook: required exits 1 with nothing recorded; optional exits 3 and says it is crash-consistent', async () => {
    const { root, dir } = await chainVm();
    const h = hooks(root, { a: '', b: '[ "$1" = freeze ] && exit 5; exit 0' });
    const req = run('vm', 'snapshot', 'create', dir, 'x', '--hooks-dir', h.dir, '--post-thaw', `echo "post $1" >> "${path.join(root, 'marker')}"`);
    expect(req.code).toBe(1);
    expect(req.stderr).toMatch(/freeze hook b exited with 5;.*HOOK_FAILED/);
    expect(h.events()).toEqual(['a freeze', 'b freeze', 'a freezeFail', 'post freezeFail']);
    expect(await diskSnapshots(dir)).toEqual([]);
    const opt = run('vm', 'snapshot', 'create', dir, 'x', '--hooks-dir', h.dir, '--quiesce', 'optional');
    expect(opt.code).toBe(3);
    expect(opt.stdout).toMatch(/crash-consistent/);
    expect(opt.stderr).toMatch(/not quiesced/);
  });

  it('a freeze hook that hangs is killed at --hook-timeout and the others get freezeFail', async () => {
    const { root, dir } = await chainVm();
    const h = hooks(root, { a: '', b: '[ "$1" = freeze ] && sleep 60; exit 0' });
    const t0 = Date.now();
    const r = run('vm', 'snapshot', 'create', dir, 'x', '--hooks-dir', h.dir, '--hook-timeout', '500ms');
    expect(r.code).toBe(1);
    expect(Date.now() - t0).toBeLessThan(10_000);
    expect(r.stderr).toMatch(/timed out after 500 ms/);
    expect(h.events()).toEqual(['a freeze', 'b freeze', 'b freezeFail', 'a freezeFail']);
  });

  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    it(`${sig} while a freeze hook runs: deltadisk kills it, every hook that began freezing gets freezeFail, exit 130, nothing recorded`, async () => {
      const { root, dir } = await chainVm();
      const h = hooks(root, { a: '', b: '[ "$1" = freeze ] && sleep 60; exit 0' });
      const child = spawn(process.execPath, [CLI, 'vm', 'snapshot', 'create', dir, 'x', '--hooks-dir', h.dir], { stdio: ['ignore', 'pipe', 'pipe'] });
      let stderr = '';
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      await waitFor(() => h.events().includes('b freeze'), 10_000);
      child.kill(sig);
      const code = await new Promise<number | null>((r) => child.on('exit', (c) => r(c)));
      expect(code, stderr).toBe(130);
      expect(h.events()).toEqual(['a freeze', 'b freeze', 'b freezeFail', 'a freezeFail']);
      expect(await diskSnapshots(dir)).toEqual([]);
      expect(parseVmsd(fs.readFileSync(path.join(dir, 'web.vmsd'))).snapshots).toEqual([]);
    });

    it(`${sig} while thawing (twice): every thaw hook still runs to completion, then exit 130 with nothing recorded`, async () => {
      const { root, dir } = await chainVm();
      const h = hooks(root, { a: '', b: '[ "$1" = thaw ] && sleep 1; echo "b done $1" >> "$(dirname "$0")/../marker"; exit 0' });
      const child = spawn(process.execPath, [CLI, 'vm', 'snapshot', 'create', dir, 'x', '--hooks-dir', h.dir], { stdio: ['ignore', 'pipe', 'pipe'] });
      await waitFor(() => h.events().includes('b thaw'), 10_000);
      child.kill(sig);
      await new Promise((r) => setTimeout(r, 100));
      child.kill(sig);
      const code = await new Promise<number | null>((r) => child.on('exit', (c) => r(c)));
      expect(code).toBe(130);
      expect(h.events()).toEqual(['a freeze', 'b freeze', 'b done freeze', 'b thaw', 'b done thaw', 'a thaw']);
      expect(await diskSnapshots(dir)).toEqual([]);
    });
  }
});
