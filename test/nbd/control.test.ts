/**
 * The control channel of a served disk: snapshot, list, delete and change maps
 * from another client while the disk is served; NBD sessions opened through it;
 * a live snapshot taken while clients write lands between requests (no write
 * torn, every acknowledged write in it); stale, foreign and over-long socket
 * paths; and a control peer that speaks garbage.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ControlServer, NbdClient, connectControl, controlPathFor, findControl, serveDisk, Disk } from '../../lib/index.js';
import { encodeLine } from '../../lib/nbd/control-protocol.js';
import { pattern, serveTempDisk, type Served } from '../helpers/nbd.js';
import { tempDir } from '../helpers/temp-dir.js';

let s: Served | undefined;

afterEach(async () => {
  await s?.close();
  s = undefined;
});

/** A socket file nobody listens on: bound by a process that was then SIGKILLed. */
function staleSocket(file: string): void {
  const script = `require('net').createServer().listen(${JSON.stringify(file)}, () => process.kill(process.pid, 'SIGKILL'))`;
  try {
    execFileSync(process.execPath, ['-e', script], { stdio: 'ignore' });
  } catch {
    // Killed, as intended.
  }
  expect(fs.lstatSync(file).isSocket()).toBe(true);
}

describe('control channel', () => {
  it('says hello, and snapshots, lists, reports and deletes while the disk is served', async () => {
    s = await serveTempDisk({ serve: { exportName: 'vm' } });
    const ctl = await connectControl(s.disk.path);
    try {
      expect(ctl.hello).toMatchObject({ protocol: 'deltadisk-control', version: 1, pid: process.pid, exportName: 'vm', readOnly: false });
      expect(ctl.hello.uri).toBe(s.served.server.uri());
      expect(fs.statSync(ctl.path).mode & 0o777).toBe(0o600);
      const w = await NbdClient.connect({ host: '127.0.0.1', port: s.port }, 'vm');
      await w.write(0, Buffer.alloc(4096, 1));
      const live = await ctl.snapshot('first', 'before the change');
      expect(live.snapshot).toMatchObject({ name: 'first', description: 'before the change' });
      expect(live.freezeMs).toBeGreaterThanOrEqual(live.drainMs);
      await w.write(8192, Buffer.alloc(4096, 2));
      await ctl.snapshot('second');
      expect((await ctl.list()).map((x) => x.name)).toEqual(['first', 'second']);
      expect(await ctl.changedBlocks('first', 'second')).toEqual([2]);
      expect(await ctl.changedBlocks('first')).toEqual([2]);
      expect((await ctl.info()).snapshotCount).toBe(2);
      await expect(ctl.snapshot('first')).rejects.toMatchObject({ code: 'SNAPSHOT_EXISTS' });
      await expect(ctl.snapshot('vm')).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
      await expect(ctl.deleteSnapshot('nope')).rejects.toMatchObject({ code: 'SNAPSHOT_NOT_FOUND' });
      await ctl.deleteSnapshot('first');
      expect((await ctl.list()).map((x) => x.name)).toEqual(['second']);
      // The running export carried on: everything written is there.
      expect((await w.read(0, 4096)).every((b) => b === 1)).toBe(true);
      expect((await w.read(8192, 4096)).every((b) => b === 2)).toBe(true);
      await w.close();
    } finally {
      await ctl.close();
    }
  });

  it('opens NBD sessions on snapshots through the control socket; a deleted snapshot stays readable by a session open on it', async () => {
    s = await serveTempDisk({
      prepare: async (d) => {
        await d.write(0, pattern(20_000, 1));
        await d.snapshot('a');
        await d.write(0, pattern(20_000, 2));
      },
    });
    const ctl = await connectControl(s.disk.path);
    try {
      const a = await ctl.openExport('a');
      expect(a.readOnly).toBe(true);
      expect(await a.read(0, 20_000)).toEqual(pattern(20_000, 1));
      await ctl.deleteSnapshot('a');
      expect(await a.read(0, 20_000)).toEqual(pattern(20_000, 1));
      await a.close();
      await expect(ctl.openExport('a')).rejects.toMatchObject({ code: 'NOT_FOUND' });
      const cur = await ctl.openExport('');
      expect(await cur.read(0, 20_000)).toEqual(pattern(20_000, 2));
      expect(cur.hasAllocation).toBe(true);
      await cur.close();
    } finally {
      await ctl.close();
    }
  });

  it('takes a live snapshot between requests while several clients write: no torn write, nothing acknowledged missing', async () => {
    const bs = 4096;
    const writeSize = 16 * bs; // each write spans 16 chain blocks
    const writers = 6;
    s = await serveTempDisk({ size: writers * writeSize, blockSize: bs });
    const ctl = await connectControl(s.disk.path);
    const conns = await Promise.all(Array.from({ length: writers }, () => NbdClient.connect({ host: '127.0.0.1', port: s!.port }, '')));
    const acked = new Array<number>(writers).fill(0);
    let stop = false;
    const stamp = (w: number, n: number): Buffer => {
      const b = Buffer.alloc(writeSize);
      for (let i = 0; i < writeSize; i += 4) b.writeUInt32LE(n * 16 + w, i);
      return b;
    };
    const loops = conns.map(async (c, w) => {
      for (let n = 1; !stop; n++) {
        await c.write(w * writeSize, stamp(w, n), { fua: n % 7 === 0 });
        acked[w] = n;
      }
    });
    try {
      await new Promise((r) => setTimeout(r, 100));
      for (let round = 0; round < 5; round++) {
        const before = [...acked];
        const live = await ctl.snapshot(`s${round}`);
        const after = [...acked];
        expect(live.freezeMs).toBeLessThan(5000);
        const reader = await ctl.openExport(`s${round}`);
        for (let w = 0; w < writers; w++) {
          const got = await reader.read(w * writeSize, writeSize);
          const v = got.readUInt32LE(0);
          expect(v % 16).toBe(w);
          const n = (v - w) / 16;
          expect(got.equals(stamp(w, n))).toBe(true); // not torn
          expect(n).toBeGreaterThanOrEqual(before[w]!); // every write acknowledged before is in
          expect(n).toBeLessThanOrEqual(after[w]! + 1); // at most the one in flight when the reply came
        }
        await reader.close();
        await new Promise((r) => setTimeout(r, 30));
      }
    } finally {
      stop = true;
      await Promise.all(loops);
      for (const c of conns) await c.close();
      await ctl.close();
    }
    expect(acked.every((n) => n > 5)).toBe(true);
  });

  it('keeps serving reads without error while snapshots are deleted (merged) live', async () => {
    const bs = 4096;
    s = await serveTempDisk({
      size: 512 * bs,
      blockSize: bs,
      prepare: async (d) => {
        for (let round = 0; round < 4; round++) {
          for (let b = round; b < 512; b += 3) await d.write(b * bs, Buffer.alloc(bs, 10 + round));
          await d.snapshot(`r${round}`);
        }
      },
    });
    const expected = await s.disk.read(0, 512 * bs);
    const c = await NbdClient.connect({ host: '127.0.0.1', port: s.port }, '');
    const ctl = await connectControl(s.disk.path);
    let stop = false;
    const failures: string[] = [];
    const reader = (async () => {
      while (!stop) {
        try {
          if (!(await c.read(0, 512 * bs)).equals(expected)) failures.push('wrong bytes');
        } catch (err) {
          failures.push((err as Error).message);
        }
      }
    })();
    for (const name of ['r1', 'r0', 'r3', 'r2']) await ctl.deleteSnapshot(name);
    stop = true;
    await reader;
    expect(failures).toEqual([]);
    await c.close();
    await ctl.close();
  });

  it('reports "not served" for a missing or stale socket, and replaces a stale one when serving', async () => {
    const { dir, cleanup } = tempDir();
    try {
      const diskPath = path.join(dir, 'd.chain');
      const disk = await Disk.create(diskPath, { size: 1 << 20 });
      expect(await findControl(diskPath)).toBeUndefined();
      await expect(connectControl(diskPath)).rejects.toMatchObject({ code: 'NOT_FOUND' });
      staleSocket(controlPathFor(diskPath));
      expect(await findControl(diskPath)).toBeUndefined();
      const served = await serveDisk(disk, { listen: { host: '127.0.0.1', port: 0 } });
      const ctl = await connectControl(diskPath);
      expect(ctl.hello.pid).toBe(process.pid);
      await ctl.close();
      // A second server on the same socket path is refused while the first answers.
      await expect(ControlServer.start(served.server)).rejects.toMatchObject({ code: 'LOCKED' });
      await served.close();
      expect(fs.existsSync(controlPathFor(diskPath))).toBe(false);
      // A file that is not a socket is never replaced.
      fs.writeFileSync(controlPathFor(diskPath), 'mine');
      await expect(serveDisk(disk, { listen: { host: '127.0.0.1', port: 0 } })).rejects.toMatchObject({ code: 'ALREADY_EXISTS' });
      expect(fs.readFileSync(controlPathFor(diskPath), 'utf8')).toBe('mine');
      await disk.close();
    } finally {
      cleanup();
    }
  });

  it('works when the socket path is longer than a Unix socket address allows', async () => {
    const { dir, cleanup } = tempDir();
    try {
      const deep = path.join(dir, 'a'.repeat(60), 'b'.repeat(60));
      fs.mkdirSync(deep, { recursive: true });
      const diskPath = path.join(deep, 'disk.chain');
      expect(Buffer.byteLength(controlPathFor(diskPath))).toBeGreaterThan(107);
      const disk = await Disk.create(diskPath, { size: 1 << 20 });
      const served = await serveDisk(disk, { listen: { host: '127.0.0.1', port: 0 } });
      expect(fs.lstatSync(controlPathFor(diskPath)).isSocket()).toBe(true);
      const ctl = await connectControl(diskPath);
      await ctl.snapshot('deep');
      expect((await ctl.list()).map((x) => x.name)).toEqual(['deep']);
      await ctl.close();
      await served.close();
      expect(fs.existsSync(controlPathFor(diskPath))).toBe(false);
      await disk.close();
    } finally {
      cleanup();
    }
  });

  it('cuts off a control peer that sends garbage or an endless line, and keeps serving others', async () => {
    s = await serveTempDisk();
    const talk = async (payload: Buffer | string): Promise<string> => {
      const sock = net.createConnection({ path: controlPathFor(s!.disk.path) });
      let text = '';
      sock.on('data', (d) => (text += d.toString()));
      sock.on('error', () => undefined);
      await new Promise((r) => sock.once('connect', r));
      sock.write(payload);
      await new Promise((r) => sock.once('close', r));
      return text;
    };
    expect(await talk('this is not json\n')).toContain('"PROTOCOL_ERROR"');
    expect(await talk(encodeLine({ id: 1, op: 'format-disk' }))).toContain('unknown op');
    expect(await talk(Buffer.alloc(100_000, 0x61))).toContain('deltadisk-control');
    const ctl = await connectControl(s.disk.path);
    expect(await ctl.list()).toEqual([]);
    await ctl.close();
  });
});
