/**
 * The NBD server on a real disk, driven through the library's NbdClient: data
 * written through the protocol is what the disk holds, snapshots are served
 * read-only under their names, block status agrees with the chain's extents,
 * concurrent requests on several connections agree with a byte model, and a
 * FLUSH or FUA write is durable on disk before its reply.
 */
import fs from 'node:fs';
import path from 'node:path';
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { Disk, NbdClient, nodeFileSystem, serveDisk, type FileHandle, type FileSystem } from '../../lib/index.js';
import { STATE_HOLE, STATE_ZERO } from '../../lib/nbd/constants.js';
import { pattern, serveTempDisk, type Served } from '../helpers/nbd.js';
import { propertyRuns, tempDir } from '../helpers/temp-dir.js';

/** The real file system, counting bytes written to each file since its last datasync. */
class SyncTracker implements FileSystem {
  readonly #unsynced = new Map<string, number>();
  unsyncedBytes(): number {
    let n = 0;
    for (const v of this.#unsynced.values()) n += v;
    return n;
  }
  async open(p: string, mode: Parameters<FileSystem['open']>[1]): Promise<FileHandle> {
    const h = await nodeFileSystem.open(p, mode);
    const unsynced = this.#unsynced;
    return {
      path: h.path,
      read: (...a) => h.read(...a),
      readv: (...a) => h.readv(...a),
      async write(buffers, position) {
        await h.write(buffers, position);
        unsynced.set(p, (unsynced.get(p) ?? 0) + buffers.reduce((n, b) => n + b.length, 0));
      },
      async datasync() {
        const before = unsynced.get(p) ?? 0;
        await h.datasync();
        unsynced.set(p, (unsynced.get(p) ?? 0) - before);
      },
      truncate: (n) => h.truncate(n),
      stat: () => h.stat(),
      close: () => h.close(),
    };
  }
  stat = nodeFileSystem.stat.bind(nodeFileSystem);
  lstat = nodeFileSystem.lstat.bind(nodeFileSystem);
  readdir = nodeFileSystem.readdir.bind(nodeFileSystem);
  mkdir = nodeFileSystem.mkdir.bind(nodeFileSystem);
  rename = nodeFileSystem.rename.bind(nodeFileSystem);
  unlink = nodeFileSystem.unlink.bind(nodeFileSystem);
  rmdir = nodeFileSystem.rmdir.bind(nodeFileSystem);
  link = nodeFileSystem.link.bind(nodeFileSystem);
  syncDir = nodeFileSystem.syncDir.bind(nodeFileSystem);
  realpath = nodeFileSystem.realpath.bind(nodeFileSystem);
}

let s: Served | undefined;
const clients: NbdClient[] = [];

afterEach(async () => {
  for (const c of clients.splice(0)) await c.close().catch(() => undefined);
  await s?.close();
  s = undefined;
});

async function connect(name = ''): Promise<NbdClient> {
  const c = await NbdClient.connect({ host: '127.0.0.1', port: s!.port }, name);
  clients.push(c);
  return c;
}

describe('NBD server on a disk', () => {
  it('reads and writes through the protocol what the disk holds', async () => {
    s = await serveTempDisk({ size: 1024 * 1024 });
    const c = await connect();
    expect(c.size).toBe(1024 * 1024);
    expect(c.structured).toBe(true);
    expect(c.hasAllocation).toBe(true);
    expect(c.blockSizes).toEqual({ minimum: 1, preferred: 4096, maximum: 32 * 1024 * 1024 });
    const data = pattern(10_000, 1);
    await c.write(1234, data);
    expect(await c.read(1234, 10_000)).toEqual(data);
    expect(await s.disk.read(1234, 10_000)).toEqual(data);
    await c.writeZeroes(2000, 100);
    expect((await s.disk.read(2000, 100)).every((b) => b === 0)).toBe(true);
    await c.trim(0, 8192);
    expect((await c.read(0, 8192)).every((b) => b === 0)).toBe(true);
    expect(await c.read(0, 0)).toEqual(Buffer.alloc(0));
    await c.flush();
  });

  it('serves the same data with simple replies', async () => {
    s = await serveTempDisk({ size: 1024 * 1024 });
    const c = await NbdClient.connect({ host: '127.0.0.1', port: s.port }, '', { structured: false });
    clients.push(c);
    expect(c.structured).toBe(false);
    await c.write(100, pattern(5000, 2));
    expect(await c.read(100, 5000)).toEqual(pattern(5000, 2));
    await expect(c.read(1024 * 1024 - 10, 10)).resolves.toHaveLength(10);
  });

  it('exports every snapshot read-only under its name, and the current state under the export name too', async () => {
    s = await serveTempDisk({
      size: 256 * 1024,
      serve: { exportName: 'vm' },
      prepare: async (d) => {
        await d.write(0, Buffer.alloc(4096, 1));
        await d.snapshot('one');
        await d.write(0, Buffer.alloc(4096, 2));
      },
    });
    const snap = await connect('one');
    expect(snap.readOnly).toBe(true);
    expect((await snap.read(0, 4096)).every((b) => b === 1)).toBe(true);
    await expect(snap.write(0, Buffer.alloc(10))).rejects.toMatchObject({ code: 'READ_ONLY' });
    const vm = await connect('vm');
    expect(vm.readOnly).toBe(false);
    expect((await vm.read(0, 4096)).every((b) => b === 2)).toBe(true);
    const dflt = await connect('');
    expect((await dflt.read(0, 4096)).every((b) => b === 2)).toBe(true);
    await expect(connect('nope')).rejects.toMatchObject({ code: 'NOT_FOUND' });
  });

  it('serves the current state read-only when asked', async () => {
    s = await serveTempDisk({ serve: { readOnly: true } });
    const c = await connect();
    expect(c.readOnly).toBe(true);
    await expect(c.write(0, Buffer.alloc(1))).rejects.toMatchObject({ code: 'READ_ONLY' });
    await expect(c.writeZeroes(0, 1)).rejects.toMatchObject({ code: 'READ_ONLY' });
    await c.flush();
  });

  it('reports base:allocation that agrees with the chain, holes as hole+zero', async () => {
    s = await serveTempDisk({
      size: 64 * 4096,
      prepare: async (d) => {
        await d.write(4 * 4096, Buffer.alloc(8192, 7));
        await d.writeZeroes(10 * 4096, 4096);
        await d.write(20 * 4096 + 100, Buffer.alloc(10, 9));
      },
    });
    const c = await connect();
    const got: { start: number; length: number; flags: number }[] = [];
    for (let pos = 0; pos < c.size; ) {
      for (const e of await c.blockStatus(pos, c.size - pos)) {
        got.push({ start: pos, length: e.length, flags: e.flags });
        pos += e.length;
      }
    }
    const hole = STATE_HOLE | STATE_ZERO;
    expect(got).toEqual([
      { start: 0, length: 4 * 4096, flags: hole },
      { start: 4 * 4096, length: 8192, flags: 0 },
      { start: 6 * 4096, length: 14 * 4096, flags: hole },
      { start: 20 * 4096, length: 4096, flags: 0 },
      { start: 21 * 4096, length: 43 * 4096, flags: hole },
    ]);
    const one = await c.blockStatus(4096, 8 * 4096, { reqOne: true });
    expect(one).toEqual([{ length: 3 * 4096, flags: hole }]);
  });

  it('agrees with a byte model under concurrent random requests on several connections', async () => {
    const size = 64 * 1024;
    await fc.assert(
      fc.asyncProperty(
        fc.array(
          fc.record({
            conn: fc.integer({ min: 0, max: 2 }),
            kind: fc.constantFrom('write', 'zero', 'trim', 'read', 'flush'),
            offset: fc.integer({ min: 0, max: size - 1 }),
            length: fc.integer({ min: 0, max: 9000 }),
            seed: fc.integer({ min: 0, max: 255 }),
          }),
          { maxLength: 40 },
        ),
        async (ops) => {
          s = await serveTempDisk({ size });
          const conns = [await connect(), await connect(), await connect()];
          const model = Buffer.alloc(size);
          // Requests touching disjoint ranges run concurrently; overlapping ones wait (clients must not overlap in flight).
          let inFlight: { start: number; end: number; p: Promise<void> }[] = [];
          for (const op of ops) {
            const length = Math.min(op.length, size - op.offset);
            const start = op.offset;
            const end = op.offset + length;
            const clash = inFlight.filter((f) => op.kind === 'flush' || f.start < end && start < f.end);
            await Promise.all(clash.map((f) => f.p));
            inFlight = inFlight.filter((f) => !clash.includes(f));
            const c = conns[op.conn]!;
            let p: Promise<void>;
            if (op.kind === 'write') {
              const data = pattern(length, op.seed);
              data.copy(model, start);
              p = c.write(start, data);
            } else if (op.kind === 'zero' || op.kind === 'trim') {
              model.fill(0, start, end);
              p = op.kind === 'zero' ? c.writeZeroes(start, length) : c.trim(start, length);
            } else if (op.kind === 'read') {
              const expected = Buffer.from(model.subarray(start, end));
              p = c.read(start, length).then((got) => expect(got).toEqual(expected));
            } else p = c.flush();
            inFlight.push({ start, end, p });
          }
          await Promise.all(inFlight.map((f) => f.p));
          expect(await conns[0]!.read(0, size)).toEqual(model);
          for (const c of clients.splice(0)) await c.close();
          await s.close();
          s = undefined;
        },
      ),
      { numRuns: propertyRuns(15) },
    );
  });

  it('fsyncs every acknowledged write before a FLUSH or FUA reply, and not before a plain write reply', async () => {
    const fsys = new SyncTracker();
    const { dir, cleanup } = tempDir();
    const disk = await Disk.create(path.join(dir, 'disk.chain'), { size: 1024 * 1024, blockSize: 4096, fs: fsys });
    const served = await serveDisk(disk, { listen: { host: '127.0.0.1', port: 0 }, control: false });
    try {
      const port = (served.server.address as { port: number }).port;
      const c = await NbdClient.connect({ host: '127.0.0.1', port }, '');
      clients.push(c);
      await Promise.all([c.write(0, pattern(50_000, 3)), c.write(200_000, pattern(9000, 5))]);
      expect(fsys.unsyncedBytes()).toBeGreaterThanOrEqual(59_000);
      await c.flush();
      expect(fsys.unsyncedBytes()).toBe(0);
      await c.write(100_000, pattern(4096, 4));
      expect(fsys.unsyncedBytes()).toBeGreaterThan(0);
      await c.write(300_000, pattern(4096, 6), { fua: true });
      expect(fsys.unsyncedBytes()).toBe(0);
      await c.writeZeroes(0, 8192, { fua: true });
      expect(fsys.unsyncedBytes()).toBe(0);
      // CAN_MULTI_CONN: a FLUSH on one connection covers writes acknowledged on another.
      const other = await NbdClient.connect({ host: '127.0.0.1', port }, '');
      clients.push(other);
      await c.write(400_000, pattern(8192, 9));
      expect(fsys.unsyncedBytes()).toBeGreaterThan(0);
      await other.flush();
      expect(fsys.unsyncedBytes()).toBe(0);
    } finally {
      for (const c of clients.splice(0)) await c.close();
      await served.close();
      await disk.close();
      cleanup();
    }
  });

  it('serves on a Unix socket, mode 0600, removed on close', async () => {
    const base = await serveTempDisk();
    await base.served.close();
    const sock = path.join(base.dir, 'nbd.sock');
    const served = await serveDisk(base.disk, { listen: { path: sock }, control: false });
    expect(fs.statSync(sock).mode & 0o777).toBe(0o600);
    expect(served.server.uri()).toBe(`nbd+unix:///?socket=${encodeURIComponent(sock)}`);
    const c = await NbdClient.connect({ path: sock }, '');
    await c.write(0, Buffer.from('hello'));
    expect((await c.read(0, 5)).toString()).toBe('hello');
    await c.close();
    await served.close();
    expect(fs.existsSync(sock)).toBe(false);
    await base.close();
  });
});
