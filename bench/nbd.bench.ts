/**
 * NBD serving speed against qemu-nbd, measured in the same run on the same data.
 *
 *  1. Sequential read: `nbdcopy <export> null:` of a fully written disk
 *     (DELTADISK_BENCH_NBD_SIZE, default 1 GiB) served by `deltadisk serve`,
 *     against the same nbdcopy from `qemu-nbd` serving a raw file with the same
 *     bytes. Target: at least 0.5 x.
 *  2. 4 KiB requests at queue depth 16 with `qemu-img bench` (reads, then
 *     writes), against `qemu-nbd` serving a qcow2 chain of the same depth
 *     (DELTADISK_BENCH_DEPTH, default 8) holding the same data. qemu-img bench
 *     walks the disk with a fixed stride; a stride of 7919 x 4 KiB (a prime)
 *     wrapped at the end of the disk scatters the requests like random ones.
 *  3. The freeze window of a live snapshot taken through the control channel
 *     while a client keeps 16 random 4 KiB writes in flight: how long writes are
 *     held back (median and maximum of DELTADISK_BENCH_SNAPSHOTS, default 10).
 *
 * Every figure is printed only after its result was verified: the bytes nbdcopy
 * reads from each server hash to those of the raw file; the two chains compare
 * equal (qemu-img compare) before the runs and again after the write runs; the
 * written pattern reads back. Runs alternate between the two servers; the best of
 * DELTADISK_BENCH_RUNS (default 3) is reported. Run: node dist/bench/nbd.bench.js
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { Disk, NbdClient, connectControl } from '../lib/index.js';
import { exportRawFile } from '../lib/chain/export-raw.js';
import { NODE_FLAGS } from '../cli/node-flags.js';

const MiB = 1024 * 1024;
const SIZE = Number(process.env.DELTADISK_BENCH_NBD_SIZE ?? 1024 * MiB);
const DEPTH = Number(process.env.DELTADISK_BENCH_DEPTH ?? 8);
const RUNS = Number(process.env.DELTADISK_BENCH_RUNS ?? 3);
const COUNT = Number(process.env.DELTADISK_BENCH_IOPS_COUNT ?? 50_000);
const CLUSTERS_PER_LAYER = Number(process.env.DELTADISK_BENCH_LAYER_CLUSTERS ?? 1024);
const CLI = path.resolve(import.meta.dirname, '../deltadisk.cjs');
const CLUSTER = 64 * 1024;
const STRIDE = 7919 * 4096;

function fail(message: string): never {
  process.stderr.write(`nbd bench: ${message}\n`);
  process.exit(1);
}

function must(cmd: string, args: readonly string[]): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 64 * MiB });
  if (r.status !== 0) fail(`${cmd} ${args.join(' ')} failed: ${r.stderr || r.error}`);
  return r.stdout;
}

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

type Transport = 'unix' | 'tcp';

async function waitForServer(target: { port: number } | { path: string }): Promise<void> {
  for (let i = 0; i < 200; i++) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = 'path' in target ? net.createConnection({ path: target.path }) : net.createConnection({ host: '127.0.0.1', port: target.port });
      s.once('connect', () => (s.destroy(), resolve(true)));
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  fail(`no server came up at ${JSON.stringify(target)}`);
}

interface Server {
  readonly url: string;
  stop(): Promise<void>;
}

let sockets = 0;
function socketPath(dir: string): string {
  return path.join(dir, `s${sockets++}.sock`);
}

async function serveDeltadisk(diskPath: string, transport: Transport): Promise<Server> {
  const where = transport === 'unix' ? ['--socket', socketPath(path.dirname(diskPath))] : ['--listen', '127.0.0.1:0'];
  const child = spawn(process.execPath, [...NODE_FLAGS, CLI, '--json', 'serve', diskPath, ...where], { stdio: ['ignore', 'pipe', 'inherit'] });
  const url = await new Promise<string>((resolve, reject) => {
    readline.createInterface({ input: child.stdout! }).on('line', (line) => {
      const e = JSON.parse(line) as { event: string; uri?: string };
      if (e.event === 'listening') resolve(e.uri!.replace(/%2F/g, '/'));
    });
    child.once('exit', (code) => reject(new Error(`deltadisk serve exited with ${code}`)));
  });
  return { url, stop: () => stopChild(child) };
}

async function serveQemu(file: string, format: 'raw' | 'qcow2', readOnly: boolean, transport: Transport): Promise<Server> {
  const port = transport === 'tcp' ? await freePort() : 0;
  const sock = transport === 'unix' ? socketPath(path.dirname(file)) : '';
  const where = transport === 'tcp' ? ['-b', '127.0.0.1', '-p', String(port)] : ['-k', sock];
  const child = spawn('qemu-nbd', ['-f', format, '-t', '--shared=8', ...where, ...(readOnly ? ['-r'] : []), file], { stdio: ['ignore', 'ignore', 'ignore'] });
  await waitForServer(transport === 'tcp' ? { port } : { path: sock });
  return { url: transport === 'tcp' ? `nbd://127.0.0.1:${port}/` : `nbd+unix:///?socket=${sock}`, stop: () => stopChild(child) };
}

function stopChild(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null) return resolve();
    child.once('exit', () => resolve());
    child.kill('SIGTERM');
  });
}

function timed(cmd: string, args: readonly string[]): number {
  const t = performance.now();
  must(cmd, args);
  return (performance.now() - t) / 1000;
}

/** SHA-256 of what nbdcopy reads from `url`. */
function hashViaNbdcopy(url: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn('nbdcopy', [url, '-'], { stdio: ['ignore', 'pipe', 'inherit'] });
    const h = createHash('sha256');
    child.stdout!.on('data', (d: Buffer) => h.update(d));
    child.once('exit', (code) => (code === 0 ? resolve(h.digest('hex')) : reject(new Error(`nbdcopy exited with ${code}`))));
  });
}

function hashFile(file: string): string {
  const h = createHash('sha256');
  const fd = fs.openSync(file, 'r');
  const buf = Buffer.allocUnsafe(8 * MiB);
  for (let n; (n = fs.readSync(fd, buf, 0, buf.length, null)) > 0; ) h.update(buf.subarray(0, n));
  fs.closeSync(fd);
  return h.digest('hex');
}

/** 8 MiB of noise, stamped per 64 KiB so no two clusters are equal (nothing deduplicates). */
const NOISE = randomBytes(8 * MiB);
function chunkAt(offset: number, length: number, seed: number): Buffer {
  const b = Buffer.allocUnsafe(length);
  NOISE.copy(b, 0, (offset + seed * 4096) % (NOISE.length - length), (offset + seed * 4096) % (NOISE.length - length) + length);
  for (let at = 0; at + 16 <= length; at += CLUSTER) {
    b.writeDoubleLE(offset + at, at);
    b.writeDoubleLE(seed, at + 8);
  }
  return b;
}

function report(title: string, rows: [string, string][]): void {
  process.stdout.write(`${title}\n`);
  for (const [k, v] of rows) process.stdout.write(`  ${k.padEnd(30)} ${v}\n`);
}

async function sequential(dir: string): Promise<Record<string, number>> {
  const diskPath = path.join(dir, 'seq.chain');
  const raw = path.join(dir, 'seq.raw');
  const disk = await Disk.create(diskPath, { size: SIZE });
  for (let pos = 0; pos < SIZE; pos += 8 * MiB) await disk.write(pos, chunkAt(pos, Math.min(8 * MiB, SIZE - pos), 1));
  await disk.flush();
  await exportRawFile(disk.currentReader(), raw);
  await disk.close();
  const rawHash = hashFile(raw);
  const out: Record<string, number> = {};
  for (const transport of ['unix', 'tcp'] as const) {
    const ours = await serveDeltadisk(diskPath, transport);
    const qemu = await serveQemu(raw, 'raw', true, transport);
    try {
      if ((await hashViaNbdcopy(ours.url)) !== rawHash) fail('deltadisk serve returned different bytes than the raw file');
      if ((await hashViaNbdcopy(qemu.url)) !== rawHash) fail('qemu-nbd returned different bytes than the raw file');
      let bestOurs = Infinity;
      let bestQemu = Infinity;
      for (let r = 0; r < RUNS; r++) {
        bestOurs = Math.min(bestOurs, timed('nbdcopy', [ours.url, 'null:']));
        bestQemu = Math.min(bestQemu, timed('nbdcopy', [qemu.url, 'null:']));
      }
      const a = SIZE / MiB / bestOurs;
      const b = SIZE / MiB / bestQemu;
      report(`sequential read over ${transport === 'unix' ? 'a Unix socket' : 'TCP (127.0.0.1)'}: nbdcopy → null:, ${SIZE / MiB} MiB (verified by SHA-256; best of ${RUNS})`, [
        ['deltadisk serve', `${a.toFixed(0)} MiB/s`],
        ['qemu-nbd, raw file', `${b.toFixed(0)} MiB/s`],
        ['ratio', `${(a / b).toFixed(2)} x (target ≥ 0.5)`],
      ]);
      Object.assign(out, { [`seq_${transport}_MiBps`]: a, [`seq_${transport}_baseline_MiBps`]: b, [`seq_${transport}_ratio`]: a / b });
    } finally {
      await ours.stop();
      await qemu.stop();
    }
  }
  return out;
}

/** Writes the same clusters, layer by layer, to a deltadisk chain and a qcow2 chain of the same depth. */
async function buildChains(dir: string): Promise<{ chain: string; qcow2: string }> {
  const chain = path.join(dir, 'rand.chain');
  const disk = await Disk.create(chain, { size: SIZE });
  const clusters = SIZE / CLUSTER;
  const layers: number[][] = [];
  for (let l = 0; l < DEPTH; l++) {
    const picked = new Set<number>();
    while (picked.size < Math.min(CLUSTERS_PER_LAYER, clusters)) picked.add(Math.floor(Math.random() * clusters));
    layers.push([...picked].sort((x, y) => x - y));
  }
  let top = '';
  for (let l = 0; l < DEPTH; l++) {
    const file = path.join(dir, `layer${l}.qcow2`);
    if (l === 0) must('qemu-img', ['create', '-q', '-f', 'qcow2', file, String(SIZE)]);
    else must('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', top, '-F', 'qcow2', file]);
    top = file;
    const q = await serveQemu(file, 'qcow2', false, 'unix');
    const c = await NbdClient.connect({ path: q.url.slice(q.url.indexOf('socket=') + 7) }, '');
    for (const cl of layers[l]!) {
      const data = chunkAt(cl * CLUSTER, CLUSTER, l + 2);
      await Promise.all([c.write(cl * CLUSTER, data), disk.write(cl * CLUSTER, data)]);
    }
    await c.flush();
    await c.close();
    await q.stop();
    if (l < DEPTH - 1) await disk.snapshot(`layer${l}`);
  }
  await disk.close();
  return { chain, qcow2: top };
}

function benchIops(url: string, write: boolean): number {
  const args = ['bench', '-f', 'raw', '-c', String(COUNT), '-d', '16', '-s', '4096', '-S', String(STRIDE), ...(write ? ['-w', '--pattern=0x5a'] : []), url];
  const out = must('qemu-img', args);
  const m = /Run completed in ([\d.]+) seconds/.exec(out);
  if (m === null) fail(`unexpected qemu-img bench output: ${out}`);
  return COUNT / Number(m[1]);
}

async function random(dir: string): Promise<Record<string, number>> {
  const { chain, qcow2 } = await buildChains(dir);
  // Over Unix sockets: qemu-nbd 7.2 answers small requests over TCP with ~40 ms
  // delays (Nagle against delayed ACKs), which would make any comparison meaningless.
  const ours = await serveDeltadisk(chain, 'unix');
  const qemu = await serveQemu(qcow2, 'qcow2', false, 'unix');
  try {
    must('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', ours.url, qemu.url]);
    let rOurs = 0;
    let rQemu = 0;
    for (let r = 0; r < RUNS; r++) {
      rOurs = Math.max(rOurs, benchIops(ours.url, false));
      rQemu = Math.max(rQemu, benchIops(qemu.url, false));
    }
    let wOurs = 0;
    let wQemu = 0;
    for (let r = 0; r < RUNS; r++) {
      wOurs = Math.max(wOurs, benchIops(ours.url, true));
      wQemu = Math.max(wQemu, benchIops(qemu.url, true));
    }
    // Verify the writes: the pattern is where the bench put it, and both disks are equal again.
    const probes = [0, STRIDE, 2 * STRIDE, 3 * STRIDE].map((o) => o % (SIZE - 4096));
    for (const url of [ours.url, qemu.url]) {
      must('qemu-io', ['-r', '-f', 'raw', ...probes.flatMap((o) => ['-c', `read -P 0x5a ${o} 4096`]), url]);
    }
    must('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', ours.url, qemu.url]);
    report(`4 KiB requests at queue depth 16 over a Unix socket: qemu-img bench, ${COUNT} requests, chain depth ${DEPTH} (verified; best of ${RUNS})`, [
      ['read: deltadisk serve', `${rOurs.toFixed(0)} IOPS`],
      ['read: qemu-nbd, qcow2 chain', `${rQemu.toFixed(0)} IOPS`],
      ['read ratio', `${(rOurs / rQemu).toFixed(2)} x`],
      ['write: deltadisk serve', `${wOurs.toFixed(0)} IOPS`],
      ['write: qemu-nbd, qcow2 chain', `${wQemu.toFixed(0)} IOPS`],
      ['write ratio', `${(wOurs / wQemu).toFixed(2)} x`],
    ]);
    return { readIops: rOurs, readBaselineIops: rQemu, writeIops: wOurs, writeBaselineIops: wQemu };
  } finally {
    await ours.stop();
    await qemu.stop();
  }
}

/** Live snapshots under a write load; each is checked to exist and to read back what was acknowledged before it. */
async function freeze(dir: string): Promise<Record<string, number>> {
  const diskPath = path.join(dir, 'live.chain');
  const disk = await Disk.create(diskPath, { size: SIZE });
  await disk.close();
  const server = await serveDeltadisk(diskPath, 'unix');
  const ctl = await connectControl(diskPath);
  const client = await NbdClient.connect({ path: server.url.slice(server.url.indexOf('socket=') + 7) }, '');
  const snapshots = Number(process.env.DELTADISK_BENCH_SNAPSHOTS ?? 10);
  const blocks = SIZE / 4096;
  let stop = false;
  let writes = 0;
  const lastValue = new Map<number, number>();
  const busy = new Set<number>();
  const load = Array.from({ length: 16 }, async () => {
    while (!stop) {
      // Writes to one block never overlap, so the last one acknowledged is its content.
      let block: number;
      do block = Math.floor(Math.random() * blocks);
      while (busy.has(block));
      busy.add(block);
      const value = ++writes;
      const data = Buffer.alloc(4096);
      data.writeUInt32LE(value, 0);
      await client.write(block * 4096, data);
      lastValue.set(block, value);
      busy.delete(block);
    }
  });
  const freezes: number[] = [];
  const drains: number[] = [];
  try {
    for (let i = 0; i < snapshots; i++) {
      await new Promise((r) => setTimeout(r, 200));
      const acked = new Map(lastValue);
      const live = await ctl.snapshot(`live-${i}`);
      freezes.push(live.freezeMs);
      drains.push(live.drainMs);
      // Verify: the snapshot holds, for a sample of blocks, at least what was acknowledged before it.
      const reader = await ctl.openExport(`live-${i}`);
      let checked = 0;
      for (const [block, value] of acked) {
        if (checked++ >= 200) break;
        const got = (await reader.read(block * 4096, 4096)).readUInt32LE(0);
        if (got < value) fail(`snapshot live-${i} lacks a write acknowledged before it (block ${block}: ${got} < ${value})`);
      }
      await reader.close();
    }
  } finally {
    stop = true;
    await Promise.all(load);
    await client.close();
    await ctl.close();
    await server.stop();
  }
  const sorted = (xs: number[]): number[] => [...xs].sort((a, b) => a - b);
  const median = (xs: number[]): number => sorted(xs)[Math.floor(xs.length / 2)]!;
  report(`live snapshot through the control channel under 16 random 4 KiB writes in flight (${snapshots} snapshots, verified)`, [
    ['writes held back, median', `${median(freezes).toFixed(1)} ms`],
    ['writes held back, max', `${Math.max(...freezes).toFixed(1)} ms`],
    ['of which draining in-flight writes, median', `${median(drains).toFixed(1)} ms`],
    ['writes acknowledged during the run', `${writes}`],
  ]);
  return { freezeMedianMs: median(freezes), freezeMaxMs: Math.max(...freezes), drainMedianMs: median(drains) };
}

async function main(): Promise<void> {
  const missing = ['nbdcopy', 'qemu-nbd', 'qemu-img', 'qemu-io'].filter((t) => spawnSync('sh', ['-c', `command -v ${t}`]).status !== 0);
  if (missing.length > 0) fail(`needs ${missing.join(', ')} (apt-get install qemu-utils libnbd-bin)`);
  if (!fs.existsSync(CLI)) fail(`build first: ${CLI} is missing`);
  const dir = fs.mkdtempSync(path.join(process.env.DELTADISK_BENCH_DIR ?? os.tmpdir(), 'deltadisk-nbd-bench-'));
  try {
    const seq = await sequential(dir);
    const rnd = await random(dir);
    const frz = await freeze(dir);
    process.stdout.write(`${JSON.stringify({ bench: 'nbd', size: SIZE, depth: DEPTH, ...seq, ...rnd, ...frz })}\n`);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

await main();
