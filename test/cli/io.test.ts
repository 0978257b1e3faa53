/**
 * `deltadisk io` as a real process: every -c form, qemu-io style output lines,
 * read -P verification (a mismatch exits non-zero), JSON lines with --json, the
 * order of commands in one process, and the documented exit codes of its errors.
 * What the commands did is checked through the library.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Disk } from '../../lib/index.js';
import { holdInChild } from '../helpers/child-holder.js';
import { lines, ok, runCli } from '../helpers/cli.js';
import { pattern } from '../helpers/disk.js';
import { tempDir } from '../helpers/temp-dir.js';

let dir: string;
let cleanup: () => void;
let file: string;
const SIZE = 1024 * 1024;

beforeEach(async () => {
  ({ dir, cleanup } = tempDir('deltadisk-cli-io-'));
  file = path.join(dir, 'disk.chain');
  await (await Disk.create(file, { size: SIZE, blockSize: 4096 })).close();
});
afterEach(() => cleanup());

async function contents(offset = 0, length = SIZE): Promise<Buffer> {
  const d = await Disk.open(file, { readOnly: true });
  try {
    return await d.read(offset, length);
  } finally {
    await d.close();
  }
}

describe('deltadisk io commands', () => {
  it('write -P, write -z, write -s, discard, flush and read, in order, one line each as qemu-io prints them', async () => {
    const src = path.join(dir, 'src.bin');
    fs.writeFileSync(src, pattern(10_000, 1));
    const r = await ok([
      'io',
      file,
      '-c', 'write -P 0xab 0 64k',
      '-c', 'write -P 17 100 50',
      '-c', 'write -z 8k 4k',
      '-c', `write -s ${src} 200000 10000`,
      '-c', 'discard 32k 8k',
      '-c', 'flush',
      '-c', 'read -P 0xab 64 36',
      '-c', 'read 0 1M',
    ]);
    expect(lines(r.stdout)).toEqual([
      'wrote 65536/65536 bytes at offset 0',
      'wrote 50/50 bytes at offset 100',
      'wrote 4096/4096 bytes at offset 8192',
      'wrote 10000/10000 bytes at offset 200000',
      'discard 8192/8192 bytes at offset 32768',
      'flushed',
      'read 36/36 bytes at offset 64',
      'read 1048576/1048576 bytes at offset 0',
    ]);
    expect(r.stderr).toBe('');
    const expected = Buffer.alloc(SIZE);
    expected.fill(0xab, 0, 65536);
    expected.fill(17, 100, 150);
    expected.fill(0, 8192, 12288);
    pattern(10_000, 1).copy(expected, 200000);
    expected.fill(0, 32768, 40960);
    expect((await contents()).equals(expected)).toBe(true);
  });

  it('write without -P writes qemu-io\'s default pattern 0xcd', async () => {
    await ok(['io', file, '-c', 'write 4096 10']);
    expect([...(await contents(4095, 12))]).toEqual([0, ...Array(10).fill(0xcd), 0]);
  });

  it('read -P that matches exits 0; a mismatch says where on stderr and exits 1, after the lines before it', async () => {
    await ok(['io', file, '-c', 'write -P 0x5a 0 4k']);
    await ok(['io', file, '-c', 'read -P 0x5a 0 4k', '-c', 'read -P 90 1k 1k']);
    const r = await runCli(['io', file, '-c', 'read -P 0x5a 0 4k', '-c', 'read -P 0x5a 2k 4k', '-c', 'read 0 1']);
    expect(r.code).not.toBe(0);
    expect(r.code).toBe(1);
    expect(lines(r.stdout)).toEqual(['read 4096/4096 bytes at offset 0']); // the third command never ran
    expect(r.stderr).toContain(`Pattern verification failed at offset ${4096}, 4096 bytes`);
  });

  it('--json gives one JSON line per command on stdout, and a mismatch as verified: false', async () => {
    const r = await runCli(['--json', 'io', file, '-c', 'write -P 1 0 8', '-c', 'flush', '-c', 'read -P 1 0 8', '-c', 'read -P 2 4 8']);
    expect(r.code).toBe(1);
    const events = lines(r.stdout).map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(events).toEqual([
      { op: 'write', offset: 0, length: 8, pattern: 1 },
      { op: 'flush' },
      { op: 'read', offset: 0, length: 8, pattern: 1, verified: true },
      { op: 'read', offset: 4, length: 8, verified: false, mismatchAt: 4 },
    ]);
    expect(JSON.parse(lines(r.stderr)[0]!)).toMatchObject({ type: 'warning' });
  });

  it('commands that ran before a failing one keep their effect', async () => {
    const r = await runCli(['io', file, '-c', 'write -P 7 0 4k', '-c', `write -P 8 ${SIZE} 1`]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('[OUT_OF_RANGE]');
    expect(lines(r.stdout)).toEqual(['wrote 4096/4096 bytes at offset 0']);
    expect((await contents(0, 4096)).every((b) => b === 7)).toBe(true);
  });
});

describe('deltadisk io errors', () => {
  it('malformed commands are usage errors (exit 2) and the disk is not touched', async () => {
    const before = await contents();
    const bad = ['frob 0 1', 'write -P 256 0 1', 'write -P x 0 1', 'write -P', 'write 0', 'read 0 1 2', 'discard 0', 'flush now', 'write -Q 1 0 1', 'read -1 1', 'write -s', ''];
    const results = await Promise.all(bad.map((c) => runCli(['io', file, '-c', 'write -P 9 0 4k', '-c', c])));
    results.forEach((r, i) => {
      expect(r.code, JSON.stringify(bad[i])).toBe(2);
      expect(r.stdout, bad[i]).toBe(''); // parsed before anything runs
      expect(r.stderr, bad[i]).toContain('[INVALID_ARGUMENT]');
    });
    expect((await contents()).equals(before)).toBe(true);
  });

  it('write -s from a missing file is NOT_FOUND (exit 10); from a short one a usage error (exit 2)', async () => {
    const missing = await runCli(['io', file, '-c', `write -s ${path.join(dir, 'nope')} 0 10`]);
    expect(missing.code).toBe(10);
    expect(missing.stderr).toMatch(/^deltadisk: error: .+ \[NOT_FOUND\]\n$/);
    fs.writeFileSync(path.join(dir, 'short'), 'abc');
    const short = await runCli(['io', file, '-c', `write -s ${path.join(dir, 'short')} 0 10`]);
    expect(short.code).toBe(2);
    expect(short.stderr).toContain('[INVALID_ARGUMENT]');
  });

  it('a missing disk is NOT_FOUND (exit 10); a damaged one exit 12', async () => {
    const missing = await runCli(['io', path.join(dir, 'nope.chain'), '-c', 'read 0 1']);
    expect(missing.code).toBe(10);
    expect(missing.stderr).toContain('[NOT_FOUND]');
    fs.writeFileSync(file, fs.readFileSync(file, 'utf8').replace('"generation": 1', '"generation": 7'));
    const corrupt = await runCli(['io', file, '-c', 'read 0 1']);
    expect(corrupt.code).toBe(12);
    expect(corrupt.stderr).toContain('[CHECKSUM_MISMATCH]');
  });

  it('needs at least one -c', async () => {
    expect((await runCli(['io', file])).code).toBe(2);
  });
});

describe('deltadisk io and the writer lock', () => {
  it('writes are LOCKED (exit 11) while another process holds the disk; reads open read-only and work', async () => {
    await ok(['io', file, '-c', 'write -P 3 0 4k']);
    const holder = await holdInChild(file, 'disk');
    try {
      const w = await runCli(['io', file, '-c', 'write -P 4 0 4k']);
      expect(w.code).toBe(11);
      expect(w.stderr).toMatch(new RegExp(`locked by pid ${holder.pid} .*\\[LOCKED\\]`));
      const r = await runCli(['io', file, '-c', 'read -P 3 0 4k']);
      expect(r.code).toBe(0);
    } finally {
      await holder.release();
    }
    expect((await contents(0, 4096)).every((b) => b === 3)).toBe(true);
  });
});
