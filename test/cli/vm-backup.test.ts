/**
 * `deltadisk vm backup` / `vm restore` as an operator runs them: the built CLI as a
 * real process, real hook scripts, a real repository, and for a running VM a real
 * `deltadisk serve` holding the disk.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { makeChainVm } from '../../fixtures/make-fixtures.js';
import { Disk } from '../../lib/chain/disk.js';
import { CLI, ok, runCli } from '../helpers/cli.js';
import { startServe } from '../helpers/nbd-cli.js';
import { jsonLines } from '../helpers/repo-cli.js';
import { waitFor } from '../helpers/wait-for.js';
import { tempDir } from '../helpers/temp-dir.js';

const MiB = 2 ** 20;
const t = tempDir('dd-vmbackup-cli-');
afterAll(t.cleanup);
let n = 0;

async function setup(sizes = [8 * MiB, 4 * MiB]): Promise<{ root: string; dir: string; repo: string }> {
  const root = path.join(t.dir, `c${n++}`);
  const dir = await makeChainVm(root, { sizes });
  const repo = path.join(root, 'repo');
  await ok(['repo', 'init', repo]);
  return { root, dir, repo };
}

function hooks(root: string, scripts: Record<string, string>): { dir: string; events: () => string[] } {
  const dir = path.join(root, 'hooks');
  fs.mkdirSync(dir, { recursive: true });
  const marker = path.join(root, 'marker');
  for (const [name, body] of Object.entries(scripts)) {
    fs.writeFileSync(path.join(dir, name), `#!/bin/sh\necho "${name} $1" >> "${marker}"\n${body}\n`, { mode: 0o755 });
  }
  return { dir, events: () => (fs.existsSync(marker) ? fs.readFileSync(marker, 'utf8').trim().split('\n') : []) };
}

async function read(p: string): Promise<Buffer> {
  const d = await Disk.open(p, { readOnly: true });
  try {
    return Buffer.from(await d.read(0, d.virtualSize));
  } finally {
    await d.close();
  }
}


describe('deltadisk vm backup / vm restore', () => {
  it('backs up quiesced with hooks, lists consistency and freeze window, backs up incrementally, restores and verifies', async () => {
    const { root, dir, repo } = await setup();
    const h = hooks(root, { '10-db': 'echo "db $DELTADISK_OPERATION $DELTADISK_VM_NAME"' });
    const sys0 = await read(path.join(dir, 'system.chain'));
    const first = await ok(['vm', 'backup', dir, '--repo', repo, '--hooks-dir', h.dir, '--tag', 'nightly']);
    expect(first.stdout).toMatch(/^captured web at \S+: quiesced, freeze window \d+\.\d ms \(2 chain disks snapshotted/m);
    expect(first.stdout).toMatch(/^ {2}hook 10-db freeze: ok \(\d+ ms\)$/m);
    expect(first.stdout).toMatch(/^ {2}hook 10-db thaw: ok \(\d+ ms\)$/m);
    expect(first.stdout).toMatch(/^backup [0-9a-f]{8} saved: 2 disks, 4 files; 12 MiB processed/m);
    expect(first.stderr).toContain('[hook 10-db freeze] db backup web');
    expect(h.events()).toEqual(['10-db freeze', '10-db thaw']);
    const s1 = (JSON.parse((await ok(['--json', 'snapshots', '--repo', repo])).stdout) as { summary: { bytesRead: number } }[])[0]!.summary;

    const live = await Disk.open(path.join(dir, 'data1.chain'));
    await live.write(MiB, Buffer.alloc(64 * 1024, 0xab));
    await live.close();
    const data1 = await read(path.join(dir, 'data1.chain'));
    const second = await ok(['--json', 'vm', 'backup', dir, '--repo', repo]);
    const s2 = jsonLines(second.stdout).find((l) => l.message_type === 'summary')!;
    expect(s2.consistency).toBe('crash-consistent');
    expect(s2.bytes_read as number).toBeLessThan(MiB);
    expect((s2.bytes_read as number) * 5).toBeLessThan(s1.bytesRead);

    const list = await ok(['snapshots', '--repo', repo]);
    expect(list.stdout).toMatch(/CONSISTENCY\s+FREEZE/);
    expect(list.stdout).toMatch(/quiesced\s+\d+\.\dms/);
    expect(list.stdout).toMatch(/crash-consistent\s+\d+\.\dms/);
    const listed = JSON.parse((await ok(['--json', 'snapshots', '--repo', repo])).stdout) as { id: string; vm: { consistency: string } }[];
    expect(listed.map((b) => b.vm.consistency)).toEqual(['quiesced', 'crash-consistent']);

    const target = path.join(root, 'restored');
    const r = await ok(['vm', 'restore', 'latest', '--repo', repo, '--target', target, '--verify']);
    expect(r.stdout).toMatch(/restored the VM of web .*crash-consistent.*verified/);
    expect((await read(path.join(target, 'system.chain'))).equals(sys0)).toBe(true);
    expect((await read(path.join(target, 'data1.chain'))).equals(data1)).toBe(true);
    expect(fs.readFileSync(path.join(target, 'web.vmx')).equals(fs.readFileSync(path.join(dir, 'web.vmx')))).toBe(true);

    const one = path.join(root, 'one');
    await ok(['vm', 'restore', listed[0]!.id.slice(0, 8), '--repo', repo, '--target', one, '--disk', 'scsi0:1', '--flatten']);
    expect(fs.readdirSync(one)).toEqual(['data1.raw']);
    const bad = await runCli(['vm', 'restore', 'latest', '--repo', repo, '--target', one, '--disk', 'nvme0:0']);
    expect(bad.code).toBe(10);
    expect(bad.stderr).toMatch(/no disk "nvme0:0"; its disks: scsi0:0 \(system.chain\), scsi0:1 \(data1.chain\)/);

    // Keep the last quiesced backup however many crash-consistent ones follow.
    const f = await ok(['--yes', 'forget', '--repo', repo, '--keep-last', '1', '--keep-quiesced', '1']);
    expect(f.stdout).toMatch(/keep 2, remove 0/);
  });

  it('--quiesce optional goes on crash-consistent after a failed freeze and exits 3; required aborts with nothing saved', async () => {
    const { root, dir, repo } = await setup([4 * MiB]);
    const h = hooks(root, { a: '', b: '[ "$1" = freeze ] && exit 4; exit 0' });
    const required = await runCli(['vm', 'backup', dir, '--repo', repo, '--hooks-dir', h.dir]);
    expect(required.code).toBe(1);
    expect(required.stderr).toMatch(/HOOK_FAILED|freeze/);
    expect(h.events()).toEqual(['a freeze', 'b freeze', 'a freezeFail']);
    expect((await ok(['snapshots', '--repo', repo])).stdout).toMatch(/no backups/);
    const optional = await runCli(['vm', 'backup', dir, '--repo', repo, '--hooks-dir', h.dir, '--quiesce', 'optional']);
    expect(optional.code, optional.stderr).toBe(3);
    expect(optional.stdout).toMatch(/crash-consistent/);
    expect(optional.stderr).toMatch(/not quiesced/);
  });

  it('SIGTERM while a freeze hook hangs: the hooks get freezeFail, exit 130, no backup and no capture snapshot left', async () => {
    const { root, dir, repo } = await setup([4 * MiB]);
    const h = hooks(root, { a: '', b: '[ "$1" = freeze ] && sleep 60; exit 0' });
    const child = spawn(process.execPath, [CLI, 'vm', 'backup', dir, '--repo', repo, '--hooks-dir', h.dir], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    await waitFor(() => h.events().includes('b freeze'));
    child.kill('SIGTERM');
    const code = await new Promise<number | null>((res) => child.on('exit', (c) => res(c)));
    expect(code, stderr).toBe(130);
    expect(h.events()).toEqual(['a freeze', 'b freeze', 'b freezeFail', 'a freezeFail']);
    expect((await ok(['snapshots', '--repo', repo])).stdout).toMatch(/no backups/);
    const d = await Disk.open(path.join(dir, 'system.chain'), { readOnly: true });
    expect(d.snapshots()).toEqual([]);
    await d.close();
  });

  it('SIGKILL mid-backup leaves nothing the next backup does not clean up: capture directory, capture snapshots, packs', async () => {
    const { root, dir, repo } = await setup([4 * MiB]);
    await ok(['vm', 'backup', dir, '--repo', repo]);
    // Killed while a thaw hook runs: the capture snapshot and directory exist, no manifest yet.
    const h = hooks(root, { a: '[ "$1" = thaw ] && sleep 60; exit 0' });
    const child = spawn(process.execPath, [CLI, 'vm', 'backup', dir, '--repo', repo, '--hooks-dir', h.dir], { stdio: 'ignore' });
    await waitFor(() => h.events().includes('a thaw'));
    child.kill('SIGKILL');
    await new Promise((res) => child.on('exit', res));
    expect(fs.readdirSync(dir).filter((f) => f.startsWith('.deltadisk-capture-'))).toHaveLength(1);
    const captures = async (): Promise<string[]> => {
      const d = await Disk.open(path.join(dir, 'system.chain'), { readOnly: true });
      const names = d.snapshots().map((x) => x.name);
      await d.close();
      return names;
    };
    expect(await captures()).toHaveLength(2);
    const again = await ok(['--json', 'vm', 'backup', dir, '--repo', repo]);
    const id = jsonLines(again.stdout).find((l) => l.message_type === 'summary')!.backup_id as string;
    expect(fs.readdirSync(dir).filter((f) => f.startsWith('.deltadisk-capture-'))).toEqual([]);
    expect(await captures()).toEqual([`deltadisk-capture-${id}`]);
    const check = await runCli(['check', '--repo', repo, '--read-data']);
    expect([0, 3], check.stdout + check.stderr).toContain(check.code);
    expect((await ok(['--json', 'snapshots', '--repo', repo])).stdout.match(/"id"/g)).toHaveLength(2);
  });

  it('backs up a VM whose disk `deltadisk serve` holds, through its control channel, while the export keeps serving', async () => {
    const { root, dir, repo } = await setup([8 * MiB]);
    const before = await read(path.join(dir, 'system.chain'));
    const served = await startServe([path.join(dir, 'system.chain'), '--listen', '127.0.0.1:0']);
    try {
      const r = await ok(['--json', 'vm', 'backup', dir, '--repo', repo]);
      const s = jsonLines(r.stdout).find((l) => l.message_type === 'summary')!;
      expect(s.consistency).toBe('crash-consistent');
      expect(r.stderr).not.toMatch(/LOCKED/);
      const again = await ok(['--json', 'vm', 'backup', dir, '--repo', repo]);
      expect(jsonLines(again.stdout).find((l) => l.message_type === 'summary')!.deleted_capture_snapshots).toEqual([
        `system.chain:deltadisk-capture-${s.backup_id as string}`,
      ]);
      const list = await ok(['--json', 'snapshot', 'list', path.join(dir, 'system.chain')]);
      expect(list.stdout).toContain(`deltadisk-capture-${jsonLines(again.stdout).find((l) => l.message_type === 'summary')!.backup_id as string}`);
    } finally {
      expect(await served.stop()).toBe(0);
    }
    const target = path.join(root, 'r');
    await ok(['vm', 'restore', 'latest', '--repo', repo, '--target', target]);
    expect((await read(path.join(target, 'system.chain'))).equals(before)).toBe(true);
  });
});
