/**
 * `deltadisk serve` as a real process, with real NBD clients as witnesses:
 * qemu-io (patterned writes, verified reads), qemu-img (convert, compare),
 * nbdinfo (size, exports, block status) and nbdcopy (both directions, several
 * connections). CI installs them (qemu-utils, libnbd-bin); without them this
 * file is skipped, and says so in its title.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pattern } from '../helpers/nbd.js';
import { missingTools, run, runCli, startServe, type ServeProcess } from '../helpers/nbd-cli.js';
import { tempDir } from '../helpers/temp-dir.js';

const TOOLS = ['qemu-io', 'qemu-img', 'nbdinfo', 'nbdcopy'];
const missing = missingTools(TOOLS);
const title = missing.length === 0 ? 'real NBD clients' : `real NBD clients — SKIPPED: ${missing.join(', ')} not installed (apt-get install qemu-utils libnbd-bin)`;
if (missing.length > 0) console.warn(`deltadisk: ${title}`);

function ok(r: { status: number | null; stdout: string; stderr: string }): string {
  expect(r.status, `${r.stdout}\n${r.stderr}`).toBe(0);
  return r.stdout;
}

describe.skipIf(missing.length > 0)(title, () => {
  let dir: string;
  let cleanup: () => void;
  let disk: string;
  let srv: ServeProcess;
  const MiB = 1024 * 1024;

  beforeAll(async () => {
    ({ dir, cleanup } = tempDir('deltadisk-real-'));
    disk = path.join(dir, 'vm.chain');
    ok(runCli(['create', disk, '--size', '32M', '--block-size', '64k']));
    ok(runCli(['io', disk, '-c', 'write -P 0x11 0 1M', '-c', 'write -P 0x22 8M 512k']));
    ok(runCli(['snapshot', 'create', disk, 'base-state']));
    srv = await startServe([disk, '--listen', '127.0.0.1:0', '--export-name', 'vm']);
  });

  afterAll(async () => {
    await srv?.stop();
    cleanup?.();
  });

  const url = (name: string): string => `nbd://127.0.0.1:${srv.port}/${name}`;

  it('qemu-io: patterned writes (aligned, unaligned, FUA, zeroes, discard) read back verified', () => {
    ok(
      run('qemu-io', [
        '-f', 'raw',
        '-c', 'write -P 0xa1 1M 64k',
        '-c', 'write -P 0xa2 1000 3000',
        '-c', 'write -f -P 0xa3 4M 1M',
        '-c', 'write -z 8M 128k',
        '-c', 'discard 8M 64k',
        '-c', 'flush',
        '-c', 'read -P 0xa1 1M 64k',
        '-c', 'read -P 0x11 0 1000',
        '-c', 'read -P 0xa2 1000 3000',
        '-c', 'read -P 0x11 4000 60k',
        '-c', 'read -P 0xa3 4M 1M',
        '-c', 'read -P 0 8M 128k',
        '-c', 'read -P 0x22 8320k 384k',
        url('vm'),
      ]),
    );
    // The verification can fail: a wrong pattern is reported and the exit status says so.
    const wrong = run('qemu-io', ['-f', 'raw', '-c', 'read -P 0x99 1M 64k', url('vm')]);
    expect(wrong.status).not.toBe(0);
    expect(wrong.stdout).toContain('Pattern verification failed');
  });

  it('qemu-io: a snapshot export reads its point in time and refuses writes', () => {
    ok(run('qemu-io', ['-r', '-f', 'raw', '-c', 'read -P 0x11 0 1M', '-c', 'read -P 0 1M 7M', '-c', 'read -P 0x22 8M 512k', url('base-state')]));
    const w = run('qemu-io', ['-f', 'raw', '-c', 'write -P 1 0 4k', url('base-state')]);
    expect(w.status).not.toBe(0);
  });

  it('qemu-img convert of the export equals deltadisk export', () => {
    const viaNbd = path.join(dir, 'via-nbd.raw');
    const viaExport = path.join(dir, 'via-export.raw');
    ok(run('qemu-img', ['convert', '-f', 'raw', '-O', 'raw', url('vm'), viaNbd]));
    ok(runCli(['export', disk, '-o', viaExport]));
    expect(fs.statSync(viaNbd).size).toBe(32 * MiB);
    expect(fs.readFileSync(viaNbd).equals(fs.readFileSync(viaExport))).toBe(true);
  });

  it('qemu-img compare: a served snapshot equals its export, and differs from the current state', () => {
    const snapRaw = path.join(dir, 'snap.raw');
    const curRaw = path.join(dir, 'cur.raw');
    ok(runCli(['export', disk, '--snapshot', 'base-state', '-o', snapRaw]));
    ok(runCli(['export', disk, '-o', curRaw]));
    ok(run('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', url('base-state'), snapRaw]));
    const differs = run('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', url('base-state'), curRaw]);
    expect(differs.status).toBe(1);
  });

  it('nbdinfo: size, the export list, and block status that matches the chain', () => {
    expect(ok(run('nbdinfo', ['--size', url('vm')])).trim()).toBe(String(32 * MiB));
    const list = JSON.parse(ok(run('nbdinfo', ['--json', '--list', url('')]))) as { exports: { 'export-name': string; is_read_only: boolean }[] };
    expect(list.exports.map((e) => [e['export-name'], e.is_read_only])).toEqual([
      ['vm', false],
      ['base-state', true],
    ]);
    const map = JSON.parse(ok(run('nbdinfo', ['--json', '--map', url('base-state')]))) as { offset: number; length: number; type: number }[];
    expect(map.map((e) => [e.offset, e.length, e.type])).toEqual([
      [0, 1 * MiB, 0],
      [1 * MiB, 7 * MiB, 3],
      [8 * MiB, 512 * 1024, 0],
      [8 * MiB + 512 * 1024, 24 * MiB - 512 * 1024, 3],
    ]);
  });

  it('nbdcopy into the export and back out, over several connections', () => {
    const src = path.join(dir, 'src.raw');
    const data = Buffer.alloc(32 * MiB);
    pattern(3 * MiB, 9).copy(data, 2 * MiB);
    pattern(5 * MiB, 10).copy(data, 20 * MiB + 12345);
    fs.writeFileSync(src, data);
    ok(run('nbdcopy', ['--connections=4', src, url('vm')]));
    const back = path.join(dir, 'back.raw');
    ok(run('nbdcopy', ['--connections=4', url('vm'), back]));
    expect(fs.readFileSync(back).equals(data)).toBe(true);
    const exported = path.join(dir, 'exported.raw');
    ok(runCli(['export', disk, '-o', exported, '--force']));
    expect(fs.readFileSync(exported).equals(data)).toBe(true);
  });
});
