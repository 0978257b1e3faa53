/**
 * Freeze window of a crash-consistent capture of a VM with chain disks, for small
 * and large disks: the window must not grow with disk size (target ≤ 100 ms, and
 * large/small within 1.5×).
 *
 *   npm run build && node dist/bench/vm-freeze-window.bench.js
 *
 * Env: DELTADISK_BENCH_SMALL (default 1G), DELTADISK_BENCH_LARGE (16G),
 * DELTADISK_BENCH_DISKS (2 per VM), DELTADISK_BENCH_BLOCKS (written 64 KiB blocks
 * per disk, scattered; 2000), DELTADISK_BENCH_RUNS (40), DELTADISK_BENCH_DIR.
 * Disks are sparse, so a 16 GiB disk costs only what is written.
 *
 * Each run first verifies the capture (every chain disk captured as a snapshot that
 * reads back the bytes written before it, even after the disk is overwritten), then
 * times captures, releasing (and deleting) each capture snapshot before the next.
 * Baseline measured in the same run: the small VM's window, and the cost of one
 * small-file write + fsync on the same file system.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Disk } from '../lib/chain/disk.js';
import { captureVm } from '../lib/vm/capture-vm.js';
import type { CapturedChainDisk } from '../lib/vm/capture-types.js';
import { makeChainVm } from '../fixtures/make-fixtures.js';

const GiB = 2 ** 30;

function sizeEnv(name: string, fallback: number): number {
  const v = process.env[name];
  if (v === undefined || v === '') return fallback;
  const m = /^(\d+)([kmgt]?)i?b?$/i.exec(v.trim());
  if (m === null) throw new Error(`${name}: not a size: ${v}`);
  return Number(m[1]) * 1024 ** ' kmgt'.indexOf((m[2] || ' ').toLowerCase());
}

function intEnv(name: string, fallback: number): number {
  const v = Number(process.env[name]);
  return Number.isSafeInteger(v) && v > 0 ? v : fallback;
}

const small = sizeEnv('DELTADISK_BENCH_SMALL', GiB);
const large = sizeEnv('DELTADISK_BENCH_LARGE', 16 * GiB);
const disks = intEnv('DELTADISK_BENCH_DISKS', 2);
const blocks = intEnv('DELTADISK_BENCH_BLOCKS', 2000);
const runs = intEnv('DELTADISK_BENCH_RUNS', 40);
const root = fs.mkdtempSync(path.join(process.env.DELTADISK_BENCH_DIR ?? os.tmpdir(), 'dd-bench-freeze-'));

function stats(xs: number[]): { min: number; median: number; p95: number; max: number } {
  const s = [...xs].sort((a, b) => a - b);
  return { min: s[0]!, median: s[Math.floor(s.length / 2)]!, p95: s[Math.min(s.length - 1, Math.ceil(s.length * 0.95) - 1)]!, max: s[s.length - 1]! };
}

async function verify(dir: string): Promise<void> {
  const first = path.join(dir, 'system.chain');
  const d0 = await Disk.open(first, { readOnly: true });
  const expected = await d0.read(0, 8 * 2 ** 20);
  await d0.close();
  const cap = await captureVm(dir, { id: 'verify' });
  const items = cap.items.filter((i): i is CapturedChainDisk => i.type === 'chain-disk');
  if (items.length !== disks) throw new Error(`verification failed: ${items.length} chain disks captured, ${disks} expected`);
  const live = await Disk.open(first);
  await live.write(0, Buffer.alloc(8 * 2 ** 20, 0xa5));
  await live.close();
  const disk = await cap.openChainDisk(items[0]!);
  const reader = await disk.openSnapshot(items[0]!.snapshot.name);
  const got = await reader.read(0, 8 * 2 ** 20);
  await reader.close();
  await disk.close();
  await cap.release({ deleteSnapshots: true });
  if (!got.equals(expected)) throw new Error('verification failed: the capture snapshot does not hold the captured state');
}

async function build(size: number, label: string): Promise<string> {
  const t0 = performance.now();
  const dir = await makeChainVm(path.join(root, label), { sizes: Array.from({ length: disks }, () => size), writtenBlocks: blocks, name: label });
  process.stderr.write(`${label}: ${disks} × ${size / GiB} GiB disks, ${blocks} blocks written each, built in ${((performance.now() - t0) / 1000).toFixed(1)} s\n`);
  await verify(dir);
  return dir;
}

/** One capture's window. The release and a sync happen outside the timing, so each capture starts on a quiet file system. */
async function once(dir: string, id: string): Promise<number> {
  const cap = await captureVm(dir, { id });
  const ms = cap.freezeWindowMs;
  await cap.release({ deleteSnapshots: true });
  execFileSync('sync');
  return ms;
}

function fsyncBaseline(): number {
  const p = path.join(root, 'fsync-probe');
  const xs: number[] = [];
  for (let i = 0; i < 20; i++) {
    const t = performance.now();
    const fd = fs.openSync(p, 'w');
    fs.writeSync(fd, Buffer.alloc(4096, i));
    fs.fdatasyncSync(fd);
    fs.closeSync(fd);
    xs.push(performance.now() - t);
  }
  return stats(xs).median;
}

try {
  const fsyncMs = fsyncBaseline();
  const smallDir = await build(small, 'small');
  const largeDir = await build(large, 'large');
  const xs: number[] = [];
  const ys: number[] = [];
  // Interleaved, after two warm-up rounds, so that I/O noise hits both sizes alike.
  for (let i = 0; i < runs + 2; i++) {
    const x = await once(smallDir, `s${i}`);
    const y = await once(largeDir, `l${i}`);
    if (i >= 2) {
      xs.push(x);
      ys.push(y);
    }
  }
  const a = stats(xs);
  const b = stats(ys);
  const fmt = (x: number): string => x.toFixed(2).padStart(8);
  console.log(`freeze window of a capture, VM with ${disks} chain disks, ${blocks} scattered 64 KiB blocks each, ${runs} runs`);
  console.log(`                       min   median      p95      max   (ms)`);
  console.log(`  ${`${small / GiB} GiB disks`.padEnd(16)}${fmt(a.min)} ${fmt(a.median)} ${fmt(a.p95)} ${fmt(a.max)}`);
  console.log(`  ${`${large / GiB} GiB disks`.padEnd(16)}${fmt(b.min)} ${fmt(b.median)} ${fmt(b.p95)} ${fmt(b.max)}`);
  console.log(`  ratio large/small: median ${(b.median / a.median).toFixed(2)} x, min ${(b.min / a.min).toFixed(2)} x   (target ≤ 1.5 x)`);
  console.log(`  baseline: one 4 KiB write + fdatasync = ${fsyncMs.toFixed(2)} ms; window = ${(a.median / fsyncMs).toFixed(1)} fsyncs (small)`);
  console.log(`  target ≤ 100 ms: ${b.p95 <= 100 && a.p95 <= 100 ? 'met' : 'NOT met'} (p95)`);
} finally {
  fs.rmSync(root, { recursive: true, force: true });
}
