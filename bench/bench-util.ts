/**
 * Shared helpers for benchmarks: scratch directories, timing, printing.
 *
 * Every benchmark verifies its result before it reports a figure, and reports the
 * ratio to a baseline measured in the same run. Sizes come from env vars so a quick
 * run (BENCH_SCALE=0.25) and a full one use the same code.
 */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { NODE_FLAGS } from '../cli/node-flags.js';

export const MiB = 1024 * 1024;
export const GiB = 1024 * MiB;

// A benchmark runs under the V8 options of the `deltadisk` executable (its first lines,
// cli/node-flags.ts), which change how often V8 collects garbage: started without
// them (`node dist/bench/x.js`), it runs itself again with them, before any of its
// own code runs (this module is evaluated before the benchmark's body).
if (!NODE_FLAGS.every((f) => process.execArgv.includes(f))) {
  const r = spawnSync(process.execPath, [...NODE_FLAGS, ...process.execArgv, process.argv[1]!, ...process.argv.slice(2)], { stdio: 'inherit' });
  process.exit(r.status ?? 1);
}

/** Multiplies the default sizes (BENCH_SCALE, default 1). */
export function scale(bytes: number, align = MiB): number {
  const s = Number(process.env.BENCH_SCALE ?? '1');
  const v = Math.max(align, Math.round((bytes * (Number.isFinite(s) && s > 0 ? s : 1)) / align) * align);
  return v;
}

export function scratchDir(name: string): { dir: string; cleanup: () => void } {
  const root = process.env.BENCH_DIR ?? os.tmpdir();
  const dir = fs.mkdtempSync(path.join(root, `deltadisk-bench-${name}-`));
  return { dir, cleanup: () => fs.rmSync(dir, { recursive: true, force: true }) };
}

/** Writes `size` bytes of random data to `file` (in 16 MiB pieces), fsynced. */
export function writeRandomFile(file: string, size: number): void {
  const fd = fs.openSync(file, 'w');
  try {
    const piece = randomBytes(16 * MiB);
    for (let pos = 0; pos < size; pos += piece.length) {
      // Vary every piece so nothing deduplicates by accident.
      piece.writeUInt32LE(pos / piece.length, 0);
      fs.writeSync(fd, piece, 0, Math.min(piece.length, size - pos), pos);
    }
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * Lets the device settle before a timed backup: everything written is synced, then a
 * pause (DELTADISK_BENCH_QUIET_SECONDS, default 4) lets the file system and the
 * device under it finish what they defer (freeing the blocks of a restore just
 * deleted, journal commits, the host's own writeback on a VM), so the backup neither
 * waits behind the benchmark's own previous step nor has it counted in its time.
 * Measured on the CI machine, an incremental chain backup right after the previous
 * round's 1 GiB restore was verified and deleted took 0.20-0.26 s (medians of three
 * runs) after 1 s and 0.13-0.15 s after 4 s; the round with no restore before it took
 * 0.14-0.15 s after either. The kernel saw no I/O in flight after the sync in both.
 */
export function quiet(): void {
  spawnSync('sync');
  spawnSync('sleep', [String(Number(process.env.DELTADISK_BENCH_QUIET_SECONDS ?? 4))]);
}

/**
 * Drops the kernel's clean page cache where this process may (root, on Linux), so a
 * timed read starts from the device: restic writes its packs through the page cache
 * and would otherwise restore from memory what deltadisk (writing packs past it)
 * reads from the device. Returns whether the cache was dropped.
 */
export function dropCaches(): boolean {
  spawnSync('sync');
  try {
    fs.writeFileSync('/proc/sys/vm/drop_caches', '3');
    return true;
  } catch {
    return false;
  }
}

export async function time<T>(fn: () => Promise<T>): Promise<{ ms: number; value: T }> {
  const t0 = process.hrtime.bigint();
  const value = await fn();
  return { ms: Number(process.hrtime.bigint() - t0) / 1e6, value };
}

/** Best of `n` runs (after one warm-up), for timings sensitive to noise. */
export async function best<T>(n: number, fn: () => Promise<T>): Promise<{ ms: number; value: T }> {
  let bestRun = await time(fn);
  for (let i = 0; i < n; i++) {
    const r = await time(fn);
    if (r.ms < bestRun.ms) bestRun = r;
  }
  return bestRun;
}

export function mibps(bytes: number, ms: number): number {
  return bytes / MiB / (ms / 1000);
}

export interface Figure {
  readonly name: string;
  readonly value: number;
  readonly unit: string;
  /** The baseline measured in the same run. */
  readonly baseline?: { readonly name: string; readonly value: number };
  /** Ratio target (value / baseline, or value for absolute targets) and its direction. */
  readonly target?: { readonly ratio?: number; readonly max?: number };
}

/** Prints one figure line, with the ratio to its baseline and whether it meets the target. */
export function report(f: Figure): boolean {
  let line = `${f.name}: ${f.value.toFixed(f.value >= 100 ? 0 : 2)} ${f.unit}`;
  let ok = true;
  if (f.baseline) {
    const ratio = f.value / f.baseline.value;
    line += `  (${f.baseline.name}: ${f.baseline.value.toFixed(f.baseline.value >= 100 ? 0 : 2)} ${f.unit}; ratio ${ratio.toFixed(2)}`;
    if (f.target?.ratio !== undefined) {
      ok = ratio >= f.target.ratio;
      line += `, target ≥ ${f.target.ratio}: ${ok ? 'met' : 'MISSED'}`;
    }
    line += ')';
  } else if (f.target?.max !== undefined) {
    ok = f.value <= f.target.max;
    line += `  (target ≤ ${f.target.max} ${f.unit}: ${ok ? 'met' : 'MISSED'})`;
  }
  console.log(line);
  return ok;
}

export function fail(message: string): never {
  console.error(`VERIFICATION FAILED: ${message}`);
  process.exit(2);
}
