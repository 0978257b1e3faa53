/**
 * Memory stays bounded: backing up a 16 GiB sparse image (with some data in it) and
 * restoring it runs in a child process whose peak RSS must stay under 300 MiB.
 * Sparse, so it costs little disk; size from DELTADISK_MEMORY_TEST_GIB (default 16).
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { seeded } from '../helpers/repo-cli.js';
import { tempDir } from '../helpers/temp-dir.js';

const DIST = path.resolve(import.meta.dirname, '../../dist/lib/index.js');
const GiB = 2 ** 30;
const MiB = 2 ** 20;
let dir: string;
let cleanup: () => void;

beforeEach(() => ({ dir, cleanup } = tempDir('deltadisk-memory-')));
afterEach(() => cleanup());

describe('memory', () => {
  it('backs up and restores a 16 GiB sparse image in under 300 MiB of RSS', () => {
    const size = Number(process.env.DELTADISK_MEMORY_TEST_GIB ?? 16) * GiB;
    const img = path.join(dir, 'big.img');
    const fd = fs.openSync(img, 'w');
    for (let k = 0; k < 8; k++) fs.writeSync(fd, seeded(`region${k}`, 8 * MiB), 0, 8 * MiB, Math.floor((size / 8) * k) + 12345);
    fs.ftruncateSync(fd, size);
    fs.closeSync(fd);
    const script = `
      import fs from 'node:fs';
      import { Repository, backup, restore } from ${JSON.stringify(DIST)};
      // VmHWM, not getrusage's maxrss: Linux carries maxrss over exec from the parent.
      const peak = () => Number(/VmHWM:\\s+(\\d+)/.exec(fs.readFileSync('/proc/self/status', 'utf8'))?.[1] ?? process.resourceUsage().maxRSS);
      const repoDir = ${JSON.stringify(path.join(dir, 'repo'))};
      await Repository.init(repoDir);
      const repo = await Repository.open(repoDir, { lock: 'shared' });
      const b = await backup(repo, [${JSON.stringify(img)}]);
      const afterBackup = peak();
      await restore(repo, b.id, { target: ${JSON.stringify(path.join(dir, 'out'))} });
      await repo.close();
      console.log(JSON.stringify({ afterBackup, peak: peak(), stored: b.summary.bytesStored, read: b.summary.bytesRead }));
    `;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 600_000 });
    expect(r.status, r.stderr).toBe(0);
    const m = JSON.parse(r.stdout.trim().split('\n').pop()!) as { afterBackup: number; peak: number; stored: number; read: number };
    expect(m.read).toBe(size);
    expect(m.stored).toBeLessThan(80 * MiB);
    expect(m.afterBackup * 1024).toBeLessThan(300 * MiB);
    expect(m.peak * 1024).toBeLessThan(300 * MiB);
    const out = path.join(dir, 'out', 'big.img');
    expect(fs.statSync(out).size).toBe(size);
    expect(fs.statSync(out).blocks * 512).toBeLessThan(200 * MiB); // restored sparse
    const check = fs.openSync(out, 'r');
    for (let k = 0; k < 8; k++) {
      const at = Math.floor((size / 8) * k) + 12345;
      const got = Buffer.alloc(8 * MiB + 2);
      fs.readSync(check, got, 0, got.length, at - 1);
      expect(got[0]).toBe(0);
      expect(got.subarray(1, 8 * MiB + 1).equals(seeded(`region${k}`, 8 * MiB))).toBe(true);
      expect(got[8 * MiB + 1]).toBe(0);
    }
    fs.closeSync(check);
  });
});
