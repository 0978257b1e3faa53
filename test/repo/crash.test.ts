/**
 * Crash consistency with real processes: the CLI is SIGKILLed at random moments
 * during backups (of files and of a chain) and during prunes. After each kill the
 * repository checks clean or leaks-only, and every backup it lists restores byte for
 * byte to the source as it was when that backup ran; every backup that reported
 * success is listed. (Power loss, which SIGKILL cannot simulate, is the job of the
 * project's power-loss harness, which drives the same code through FileSystem.)
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Disk } from '../../lib/index.js';
import { cli, jsonLines, seeded, startCli } from '../helpers/repo-cli.js';
import { chainMemberNames } from '../../lib/repo/chain-backup.js';
import { snapshotTree } from '../helpers/repo.js';
import { propertyRuns, tempDir } from '../helpers/temp-dir.js';

const KiB = 1024;
let dir: string;
let cleanup: () => void;
let repo: string;
let src: string;

beforeEach(() => {
  ({ dir, cleanup } = tempDir('deltadisk-crash-'));
  repo = path.join(dir, 'repo');
  src = path.join(dir, 'src');
  fs.mkdirSync(src);
});
afterEach(() => cleanup());

/** Version `v` of the source: some files stable, some new, some shared between versions. */
function writeVersion(v: number): Record<string, string> {
  fs.writeFileSync(path.join(src, 'stable'), seeded('stable', 700 * KiB));
  fs.writeFileSync(path.join(src, 'changing'), seeded(`v${v}`, 900 * KiB));
  fs.writeFileSync(path.join(src, 'recurring'), seeded(`r${v % 3}`, 600 * KiB));
  const tree = snapshotTree(src);
  delete tree['disk.chain'];
  // The chain's own files (deltas, lock, an interrupted merge's state or temp files
  // left by a killed backup) are part of the disk, not files of the directory.
  for (const k of chainMemberNames('disk.chain', Object.keys(tree))) delete tree[k];
  return tree;
}

const BLOCK = 64 * KiB;
/** The disk at version v: region k (k ≤ v) of 4 blocks filled with byte k + 1. */
function diskAt(v: number): Buffer {
  const b = Buffer.alloc(64 * BLOCK);
  for (let k = 0; k <= v && k < 16; k++) b.fill(k + 1, k * 4 * BLOCK, (k + 1) * 4 * BLOCK);
  return b;
}

async function writeDiskVersion(v: number): Promise<void> {
  const d = await Disk.open(path.join(src, 'disk.chain'));
  try {
    if (v < 16) await d.write(v * 4 * BLOCK, Buffer.alloc(4 * BLOCK, v + 1));
    await d.flush();
  } finally {
    await d.close();
  }
}

async function listed(): Promise<{ id: string; version: number }[]> {
  const r = await cli(['snapshots', '--repo', repo, '--json']);
  expect(r.code).toBe(0);
  return (JSON.parse(r.stdout) as { id: string; tags: string[] }[]).map((b) => ({ id: b.id, version: Number(b.tags[0]!.slice(1)) }));
}

/** Checks the repository, then restores the newest `limit` backups (all by default) and compares them. */
async function verifyAll(trees: Map<number, Record<string, string>>, limit = Infinity): Promise<void> {
  const check = await cli(['check', '--repo', repo, '--read-data']);
  expect([0, 3], `check exited ${check.code}:\n${check.stdout}${check.stderr}`).toContain(check.code);
  for (const b of (await listed()).slice(-limit)) {
    const out = path.join(dir, `restore-${b.id}-${Math.random().toString(36).slice(2)}`);
    const r = await cli(['restore', b.id, '--repo', repo, '--target', out]);
    expect(r.code, r.stderr).toBe(0);
    const got = snapshotTree(path.join(out, 'src'));
    delete got['disk.chain'];
    for (const k of chainMemberNames('disk.chain', Object.keys(got))) delete got[k];
    expect(got).toEqual(trees.get(b.version));
    const disk = await Disk.open(path.join(out, 'src', 'disk.chain'), { readOnly: true });
    try {
      expect((await disk.read(0, disk.virtualSize)).equals(diskAt(b.version))).toBe(true);
    } finally {
      await disk.close();
    }
    fs.rmSync(out, { recursive: true, force: true });
  }
}

describe('crash consistency (SIGKILL)', () => {
  it('keeps every finished backup restorable when backups and prunes are killed', async () => {
    expect((await cli(['repo', 'init', repo, '--pack-size', '1M'])).code).toBe(0);
    const d = await Disk.create(path.join(src, 'disk.chain'), { size: 64 * BLOCK, blockSize: BLOCK });
    await d.close();
    const trees = new Map<number, Record<string, string>>();
    const acked = new Set<number>();
    let killed = 0;
    // How long the last backup that was let finish took: the others are killed at a
    // random point of that (a fixed range of delays stopped killing anything once
    // backups got faster than it).
    let lastMs = 500;
    const rounds = propertyRuns(6);
    for (let v = 0; v < rounds; v++) {
      trees.set(v, writeVersion(v));
      await writeDiskVersion(v);
      const t0 = performance.now();
      const run = startCli(['backup', src, '--repo', repo, '--tag', `v${v}`, '--json']);
      const delay = v % 3 === 0 ? 10_000 : Math.floor(lastMs * (0.2 + 0.7 * Math.random()));
      const timer = setTimeout(() => run.child.kill('SIGKILL'), delay);
      const r = await run.done;
      clearTimeout(timer);
      if (v % 3 === 0) lastMs = performance.now() - t0;
      if (r.code === 0) acked.add(v);
      else {
        expect(r.signal, r.stderr).toBe('SIGKILL');
        killed++;
      }
      await verifyAll(trees, 2);
      const versions = new Set((await listed()).map((b) => b.version));
      for (const a of acked) expect(versions.has(a)).toBe(true);
    }
    expect(acked.size).toBeGreaterThan(0);
    await verifyAll(trees);
    // Now prunes, killed too.
    for (let k = 0; k < 3; k++) {
      expect((await cli(['forget', '--repo', repo, '--keep-last', String(Math.max(1, acked.size - k - 1)), '--yes'])).code).toBe(0);
      const run = startCli(['prune', '--repo', repo, '--yes', '--repack-threshold', '0.01']);
      const timer = setTimeout(() => run.child.kill('SIGKILL'), 30 + Math.floor(Math.random() * 300));
      const r = await run.done;
      clearTimeout(timer);
      if (r.code !== 0) {
        expect(r.signal, r.stderr).toBe('SIGKILL');
        killed++;
      }
      await verifyAll(trees);
    }
    const last = await cli(['prune', '--repo', repo, '--yes', '--repack-threshold', '0.01']);
    expect(last.code, last.stderr).toBe(0);
    expect(jsonLines((await cli(['check', '--repo', repo, '--json'])).stdout).find((l) => l.message_type === 'summary')).toMatchObject({ errors: 0, leaks: 0 });
    // Whatever was killed, the next finished backup leaves the disk one anchor: its own.
    const final = await cli(['backup', src, '--repo', repo, '--tag', `v${rounds - 1}`, '--json']);
    expect(final.code, final.stderr).toBe(0);
    const id = jsonLines(final.stdout).find((l) => l.message_type === 'summary')!.backup_id as string;
    const disk = await Disk.open(path.join(src, 'disk.chain'), { readOnly: true });
    try {
      expect(disk.snapshots().filter((s) => s.name.startsWith('deltadisk-backup-')).map((s) => s.name)).toEqual([`deltadisk-backup-${id}`]);
    } finally {
      await disk.close();
    }
    expect(killed).toBeGreaterThan(0);
  });
});
