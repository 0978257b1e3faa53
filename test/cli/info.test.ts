/**
 * `deltadisk info` as a real process: human text, --json equal to the library's
 * DiskInfo, read-only access while another process writes, and exit codes.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Disk } from '../../lib/index.js';
import { holdInChild } from '../helpers/child-holder.js';
import { lines, ok, runCli } from '../helpers/cli.js';
import { cliFixture, FIXTURE_SIZE } from '../helpers/cli-fixture.js';
import { tempDir } from '../helpers/temp-dir.js';

let dir: string;
let cleanup: () => void;
let file: string;
const SIZE = FIXTURE_SIZE;

beforeEach(async () => {
  ({ dir, cleanup } = tempDir('deltadisk-cli-info-'));
  ({ file } = await cliFixture(dir));
});
afterEach(() => cleanup());

describe('deltadisk info', () => {
  it('prints the disk, its layers and space in words', async () => {
    const r = await ok(['info', file]);
    const out = r.stdout;
    expect(out).toContain(`disk:            ${file}`);
    expect(out).toContain(`virtual size:    8 MiB (${SIZE} bytes)`);
    expect(out).toContain('block size:      4 KiB');
    expect(out).toContain('base:            none (reads as zeros)');
    expect(out).toContain('chain depth:     2');
    expect(out).toContain('layers:          2, snapshots: 1');
    const table = lines(out).filter((l) => /\.delta/.test(l));
    expect(table).toHaveLength(2);
    expect(table[0]).toMatch(/^\| disk-000001\.delta\s+base\s+snap\s/);
    expect(table[1]).toMatch(/^\* disk-000002\.delta\s+[0-9a-f]{8}\s+-\s/);
    expect(r.stderr).toBe('');
  });

  it('--json is the library\'s DiskInfo, before or after the arguments', async () => {
    const d = await Disk.open(file, { readOnly: true });
    const expected = JSON.parse(JSON.stringify(await d.info())) as unknown;
    await d.close();
    expect(JSON.parse((await ok(['info', file, '--json'])).stdout)).toEqual(expected);
    expect(JSON.parse((await ok(['--json', 'info', file])).stdout)).toEqual(expected);
  });

  it('works while another process writes to the disk (it opens read-only)', async () => {
    const holder = await holdInChild(file, 'disk');
    try {
      await ok(['info', file]);
    } finally {
      await holder.release();
    }
  });

  it('a missing disk is exit 10; a damaged one exit 12, as text or JSON on stderr', async () => {
    const missing = await runCli(['info', path.join(dir, 'nope.chain')]);
    expect(missing.code).toBe(10);
    expect(missing.stderr).toMatch(/^deltadisk: error: .*\[NOT_FOUND\]\n$/);
    fs.writeFileSync(path.join(dir, 'disk-000002.delta'), Buffer.alloc(100));
    const damaged = await runCli(['--json', 'info', file]);
    expect(damaged.code).toBe(12);
    expect(damaged.stdout).toBe('');
    expect(JSON.parse(damaged.stderr)).toMatchObject({ type: 'error', code: 'TRUNCATED', path: path.join(dir, 'disk-000002.delta') });
  });
});
