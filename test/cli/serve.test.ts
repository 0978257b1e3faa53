/**
 * `deltadisk serve` as a process: snapshot commands find its control channel,
 * a live snapshot taken from the CLI while a client writes is a clean point in
 * time, SIGTERM flushes and cleans up, SIGKILL during a stream of flushed writes
 * loses nothing that was flushed (and a restart replaces the stale socket), and
 * bad invocations exit with the documented codes.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Disk, NbdClient } from '../../lib/index.js';
import { CLI, missingTools, run, runCli, startServe, type ServeProcess } from '../helpers/nbd-cli.js';
import { tempDir } from '../helpers/temp-dir.js';

let dir: string;
let cleanup: () => void;
let disk: string;
const servers: ServeProcess[] = [];

beforeEach(() => {
  ({ dir, cleanup } = tempDir('deltadisk-serve-'));
  disk = path.join(dir, 'vm.chain');
});

afterEach(async () => {
  for (const s of servers.splice(0)) await s.stop('SIGKILL');
  cleanup();
});

async function serve(...args: string[]): Promise<ServeProcess> {
  const s = await startServe([disk, '--listen', '127.0.0.1:0', ...args]);
  servers.push(s);
  return s;
}

/** Runs the CLI without blocking this process's event loop (clients keep running). */
function runCliAsync(args: readonly string[]): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('exit', (status) => resolve({ status, stdout, stderr }));
  });
}

function stamp(slot: number, n: number, size: number): Buffer {
  const b = Buffer.alloc(size);
  for (let i = 0; i < size; i += 8) {
    b.writeUInt32LE(n, i);
    b.writeUInt32LE(slot, i + 4);
  }
  return b;
}

/** The write number a slot holds: 0 for never written; throws on a torn or foreign block. */
function stampOf(b: Buffer, slot: number): number {
  if (b.every((x) => x === 0)) return 0;
  const n = b.readUInt32LE(0);
  expect(b.equals(stamp(slot, n, b.length)), `slot ${slot} is torn or foreign`).toBe(true);
  return n;
}

describe('deltadisk serve', () => {
  it('routes snapshot create, list and delete through the control channel while serving', async () => {
    expect(runCli(['create', disk, '--size', '4M']).status).toBe(0);
    const srv = await serve('--export-name', 'vm');
    expect(srv.control).toBe(`${disk}.ctl`);
    const created = runCli(['--json', 'snapshot', 'create', disk, 'nightly', '-d', 'from cron']);
    expect(created.status, created.stderr).toBe(0);
    const info = JSON.parse(created.stdout) as { name: string; description: string; freezeMs: number };
    expect(info).toMatchObject({ name: 'nightly', description: 'from cron' });
    expect(info.freezeMs).toBeGreaterThan(0);
    expect(runCli(['snapshot', 'create', disk, 'nightly']).status).toBe(1); // SNAPSHOT_EXISTS, from the server
    const list = runCli(['--json', 'snapshot', 'list', disk]);
    expect((JSON.parse(list.stdout) as { name: string }[]).map((s) => s.name)).toEqual(['nightly']);
    const c = await NbdClient.connect({ host: '127.0.0.1', port: srv.port }, 'nightly');
    expect(c.readOnly).toBe(true);
    await c.close();
    expect(runCli(['snapshot', 'delete', disk, 'missing', '--yes']).status).toBe(10);
    const del = runCli(['snapshot', 'delete', disk, 'nightly', '--yes']);
    expect(del.status, del.stderr).toBe(0);
    expect(del.stderr).toContain('asking it through');
    expect(JSON.parse(runCli(['--json', 'snapshot', 'list', disk]).stdout)).toEqual([]);
    // Revert is not offered while served: the lock stands.
    expect(runCli(['snapshot', 'revert', disk, 'x', '--yes']).status).toBe(11);
  });

  it('takes a clean live snapshot from the CLI while a client writes', async () => {
    expect(runCli(['create', disk, '--size', '8M', '--block-size', '4k']).status).toBe(0);
    const srv = await serve();
    const c = await NbdClient.connect({ host: '127.0.0.1', port: srv.port }, '');
    const size = 32 * 1024;
    const slots = 256;
    let acked = 0;
    let stop = false;
    const writer = (async () => {
      for (let n = 1; !stop && n < slots; n++) {
        await c.write(n * size, stamp(n, n, size));
        acked = n;
      }
    })();
    await new Promise((r) => setTimeout(r, 150));
    const before = acked;
    const r = await runCliAsync(['snapshot', 'create', disk, 'live']);
    const after = acked;
    stop = true;
    await writer;
    expect(r.status, r.stderr).toBe(0);
    const snap = await NbdClient.connect({ host: '127.0.0.1', port: srv.port }, 'live');
    let last = 0;
    for (let n = 1; n < slots; n++) {
      const got = stampOf(await snap.read(n * size, size), n);
      if (got !== 0) {
        expect(got).toBe(n);
        expect(last).toBe(n - 1); // a prefix of the sequential writes
        last = n;
      }
    }
    expect(last).toBeGreaterThanOrEqual(before);
    expect(last).toBeLessThanOrEqual(after + 1);
    await snap.close();
    await c.close();
  });

  it('on SIGTERM answers, flushes, removes its socket and releases the disk', async () => {
    expect(runCli(['create', disk, '--size', '4M']).status).toBe(0);
    const srv = await serve();
    const c = await NbdClient.connect({ host: '127.0.0.1', port: srv.port }, '');
    await c.write(12345, Buffer.from('written without a flush'));
    expect(await srv.stop('SIGTERM')).toBe(0);
    await c.close().catch(() => undefined);
    expect(fs.existsSync(`${disk}.ctl`)).toBe(false);
    const d = await Disk.open(disk);
    expect((await d.read(12345, 23)).toString()).toBe('written without a flush');
    await d.close();
  });

  it('loses nothing flushed when killed with SIGKILL mid-stream, and restarts over the stale socket', async () => {
    expect(runCli(['create', disk, '--size', '16M', '--block-size', '4k']).status).toBe(0);
    const size = 16 * 1024;
    const slots = 64;
    const lastWrite = new Array<number>(slots).fill(0);
    const lastFlushed = new Array<number>(slots).fill(0);
    let n = 0;
    for (let round = 0; round < 3; round++) {
      const srv = await serve();
      const c = await NbdClient.connect({ host: '127.0.0.1', port: srv.port }, '');
      const issued = [...lastWrite];
      const stream = (async () => {
        for (;;) {
          const batch: Promise<void>[] = [];
          const slotsInBatch: [number, number][] = [];
          for (let k = 0; k < 8; k++) {
            n++;
            const slot = n % slots;
            issued[slot] = n;
            slotsInBatch.push([slot, n]);
            batch.push(c.write(slot * size, stamp(slot, n, size)));
          }
          await Promise.all(batch);
          for (const [slot, m] of slotsInBatch) lastWrite[slot] = m;
          await c.flush();
          for (const [slot, m] of slotsInBatch) lastFlushed[slot] = m;
        }
      })().catch(() => undefined);
      await new Promise((r) => setTimeout(r, 300 + round * 200));
      expect(await srv.stop('SIGKILL')).toBe('SIGKILL');
      await stream;
      await c.close().catch(() => undefined);
      expect(fs.lstatSync(`${disk}.ctl`).isSocket()).toBe(true); // left behind: stale
      const d = await Disk.open(disk);
      for (let slot = 0; slot < slots; slot++) {
        const got = stampOf(await d.read(slot * size, size), slot);
        expect(got).toBeGreaterThanOrEqual(lastFlushed[slot]!);
        expect(got).toBeLessThanOrEqual(issued[slot]!);
        lastWrite[slot] = got;
        lastFlushed[slot] = got;
      }
      await d.close();
      servers.splice(servers.indexOf(srv), 1);
    }
    expect(n).toBeGreaterThan(100);
  });

  it('leaves LOCKED standing when the disk is held by a writer that does not serve it', async () => {
    expect(runCli(['create', disk, '--size', '4M']).status).toBe(0);
    const holder = spawn(
      process.execPath,
      ['--input-type=module', '-e', `import { Disk } from ${JSON.stringify(path.resolve(import.meta.dirname, '../../dist/lib/index.js'))}; await Disk.open(${JSON.stringify(disk)}); console.log('held'); setInterval(() => {}, 1000);`],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    try {
      await new Promise((r) => holder.stdout.once('data', r));
      const r = runCli(['snapshot', 'create', disk, 'x']);
      expect(r.status).toBe(11);
      expect(r.stderr).toContain('[LOCKED]');
    } finally {
      holder.kill('SIGKILL');
    }
  });

  it('--read-only: no control socket, writes refused', async () => {
    expect(runCli(['create', disk, '--size', '4M']).status).toBe(0);
    const srv = await serve('--read-only');
    expect(srv.control).toBeNull();
    expect(fs.existsSync(`${disk}.ctl`)).toBe(false);
    const c = await NbdClient.connect({ host: '127.0.0.1', port: srv.port }, '');
    expect(c.readOnly).toBe(true);
    await expect(c.write(0, Buffer.from('x'))).rejects.toMatchObject({ code: 'READ_ONLY' });
    await c.close();
  });

  it('--socket: serves on a Unix socket (a real client too, when qemu-io is installed)', async () => {
    expect(runCli(['create', disk, '--size', '4M']).status).toBe(0);
    const sock = path.join(dir, 'nbd.sock');
    const srv = await startServe([disk, '--socket', sock]);
    servers.push(srv);
    expect(srv.uri).toBe(`nbd+unix:///?socket=${encodeURIComponent(sock)}`);
    const c = await NbdClient.connect({ path: sock }, '');
    await c.write(0, Buffer.alloc(4096, 0x5a));
    await c.close();
    if (missingTools(['qemu-io']).length === 0) {
      const r = run('qemu-io', ['-r', '-f', 'raw', '-c', 'read -P 0x5a 0 4k', `nbd+unix:///?socket=${sock}`]);
      expect(r.status, r.stdout + r.stderr).toBe(0);
    }
    expect(await srv.stop()).toBe(0);
    expect(fs.existsSync(sock)).toBe(false);
  });

  it('exits with the documented codes on bad invocations', () => {
    expect(runCli(['serve', path.join(dir, 'missing.chain')]).status).toBe(10);
    expect(runCli(['create', disk, '--size', '4M']).status).toBe(0);
    expect(runCli(['serve', disk, '--listen', 'nonsense']).status).toBe(2);
    expect(runCli(['serve', disk, '--listen', '127.0.0.1:99999']).status).toBe(2);
    expect(runCli(['serve', disk, '--listen', '127.0.0.1:0', '--socket', path.join(dir, 's')]).status).toBe(2);
  });
});
