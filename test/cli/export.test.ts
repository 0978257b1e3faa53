/**
 * `deltadisk export` as a real process: the exported bytes against the library's,
 * sparse output, --snapshot, -o - to stdout, no replacing without --force, exit codes.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ok, runCli } from '../helpers/cli.js';
import { cliFixture, FIXTURE_SIZE } from '../helpers/cli-fixture.js';
import { tempDir } from '../helpers/temp-dir.js';

let dir: string;
let cleanup: () => void;
let file: string;
let atSnap: Buffer;
let current: Buffer;
const SIZE = FIXTURE_SIZE;

beforeEach(async () => {
  ({ dir, cleanup } = tempDir('deltadisk-cli-export-'));
  ({ file, atSnap, current } = await cliFixture(dir));
});
afterEach(() => cleanup());

describe('deltadisk export', () => {
  it('-o file writes the current state as a raw image, sparse where it reads zeros', async () => {
    const out = path.join(dir, 'out.raw');
    const r = await ok(['export', file, '-o', out]);
    expect(r.stdout).toBe(`exported 8 MiB to ${out}\n`);
    expect(fs.readFileSync(out).equals(current)).toBe(true);
    // The middle 4 MiB chunk reads zeros: it is a hole, not written.
    expect(fs.statSync(out).blocks * 512).toBeLessThan(SIZE - 3 * 1024 * 1024);
    expect(fs.readdirSync(dir).filter((f) => f.includes('.tmp-'))).toEqual([]);
  });

  it('--snapshot exports that point in time; --json describes the export', async () => {
    const out = path.join(dir, 'snap.raw');
    const r = await ok(['export', file, '--snapshot', 'snap', '-o', out, '--json']);
    expect(JSON.parse(r.stdout)).toEqual({ output: out, bytes: SIZE, snapshot: 'snap' });
    expect(fs.readFileSync(out).equals(atSnap)).toBe(true);
  });

  it('-o - streams the raw bytes to stdout, and nothing else', async () => {
    const r = await ok(['export', file, '-o', '-']);
    expect(r.stdoutBytes.length).toBe(SIZE);
    expect(r.stdoutBytes.equals(current)).toBe(true);
    const s = await ok(['export', file, '--snapshot', 'snap', '-o', '-']);
    expect(s.stdoutBytes.equals(atSnap)).toBe(true);
  });

  it('refuses to replace an existing file (exit 1) unless --force', async () => {
    const out = path.join(dir, 'out.raw');
    fs.writeFileSync(out, 'keep me');
    const r = await runCli(['export', file, '-o', out]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('[ALREADY_EXISTS]');
    expect(fs.readFileSync(out, 'utf8')).toBe('keep me');
    await ok(['export', file, '-o', out, '--force']);
    expect(fs.readFileSync(out).equals(current)).toBe(true);
  });

  it('an unknown snapshot is exit 10 and writes nothing; -o is required (exit 2)', async () => {
    const out = path.join(dir, 'x.raw');
    const r = await runCli(['export', file, '--snapshot', 'nope', '-o', out]);
    expect(r.code).toBe(10);
    expect(r.stderr).toContain('[SNAPSHOT_NOT_FOUND]');
    expect(fs.existsSync(out)).toBe(false);
    expect((await runCli(['export', file])).code).toBe(2);
  });
});

describe('deltadisk export progress', () => {
  it('draws no progress without a terminal, and keeps stdout clean either way', async () => {
    const plain = await ok(['export', file, '-o', path.join(dir, 'a.raw')]);
    expect(plain.stderr).toBe('');
    const quiet = await ok(['-q', 'export', file, '-o', path.join(dir, 'b.raw'), '--no-progress']);
    expect(quiet.stderr).toBe('');
  });

  it('--progress forces progress onto stderr even without a terminal (docs/CLI.md)', async () => {
    const r = await ok(['--progress', '--json', 'export', file, '-o', path.join(dir, 'c.raw')]);
    expect(r.stderr).toMatch(/export \[.*\] 100% \| 8 MiB \/ 8 MiB/);
    expect(JSON.parse(r.stdout)).toMatchObject({ bytes: SIZE });
  });
});
