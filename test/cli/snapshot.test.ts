/**
 * `deltadisk snapshot create|list|revert|delete` as a real process: the tree as
 * text and JSON, confirmation of destructive actions (refused without a terminal
 * and without --yes, exit 2, nothing changed), --dry-run, --keep-current-as, and
 * the documented exit codes of errors, including a lock held by another process.
 */
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Disk } from '../../lib/index.js';
import { holdInChild } from '../helpers/child-holder.js';
import { lines, ok, runCli } from '../helpers/cli.js';
import { dirState } from '../helpers/disk.js';
import { tempDir } from '../helpers/temp-dir.js';

let dir: string;
let cleanup: () => void;
let file: string;

beforeEach(async () => {
  ({ dir, cleanup } = tempDir('deltadisk-cli-snap-'));
  file = path.join(dir, 'disk.chain');
  // one (0x01 in block 0) ← two (0x02 in block 1); current has 0x03 in block 2.
  const d = await Disk.create(file, { size: 1024 * 1024, blockSize: 4096 });
  await d.write(0, Buffer.alloc(4096, 1));
  await d.snapshot('one', 'first one');
  await d.write(4096, Buffer.alloc(4096, 2));
  await d.snapshot('two');
  await d.write(8192, Buffer.alloc(4096, 3));
  await d.close();
});
afterEach(() => cleanup());

/** The first byte of blocks 0..2 of the current state, and the snapshot names. */
async function state(): Promise<{ bytes: number[]; snapshots: string[] }> {
  const d = await Disk.open(file, { readOnly: true });
  try {
    const data = await d.read(0, 3 * 4096);
    return { bytes: [data[0]!, data[4096]!, data[8192]!], snapshots: d.snapshots().map((s) => s.name) };
  } finally {
    await d.close();
  }
}

describe('snapshot create and list', () => {
  it('create prints the name and id; -d sets the description; --json gives the snapshot', async () => {
    const r = await ok(['snapshot', 'create', file, 'three', '-d', 'after the upgrade']);
    expect(lines(r.stdout)).toEqual([expect.stringMatching(/^created snapshot three \([0-9a-f-]{36}\)$/)]);
    const j = await ok(['snapshot', 'create', file, 'four', '--json']);
    expect(JSON.parse(j.stdout)).toMatchObject({ name: 'four', description: '', current: true, parent: expect.any(String) });
    const list = JSON.parse((await ok(['snapshot', 'list', file, '--json'])).stdout) as { name: string; description: string }[];
    expect(list.map((s) => [s.name, s.description])).toEqual([
      ['one', 'first one'],
      ['two', ''],
      ['three', 'after the upgrade'],
      ['four', ''],
    ]);
  });

  it('list prints the tree, indented by parent, with * on the snapshot the current state descends from', async () => {
    await ok(['snapshot', 'revert', file, 'one', '--yes']);
    await ok(['snapshot', 'create', file, 'three']);
    const out = lines((await ok(['snapshot', 'list', file])).stdout);
    expect(out).toHaveLength(3);
    expect(out[0]).toMatch(/^ {2}one {2}\S+ {2}first one$/);
    expect(out[1]).toMatch(/^ {4} {2}two {2}\S+$/);
    expect(out[2]).toMatch(/^ {4}\* three {2}\S+$/);
  });

  it('list of a disk without snapshots says so; --json gives []', async () => {
    const f = path.join(dir, 'empty.chain');
    await ok(['create', f, '--size', '1M']);
    expect((await ok(['snapshot', 'list', f])).stdout).toBe('no snapshots\n');
    expect(JSON.parse((await ok(['snapshot', 'list', f, '--json'])).stdout)).toEqual([]);
  });

  it('a duplicate name is exit 1 (SNAPSHOT_EXISTS); an invalid one exit 2', async () => {
    const dup = await runCli(['snapshot', 'create', file, 'one']);
    expect(dup.code).toBe(1);
    expect(dup.stderr).toContain('[SNAPSHOT_EXISTS]');
    const bad = await runCli(['snapshot', 'create', file, 'bad\nname']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('[INVALID_ARGUMENT]');
    expect((await state()).snapshots).toEqual(['one', 'two']);
  });

  it('a snapshot of a disk held by another process is exit 11 (LOCKED)', async () => {
    const holder = await holdInChild(file, 'disk');
    try {
      const r = await runCli(['snapshot', 'create', file, 'three']);
      expect(r.code).toBe(11);
      expect(r.stderr).toContain('[LOCKED]');
      expect(r.stderr).toContain(`pid ${holder.pid}`);
      // Listing only reads, so it works meanwhile.
      await ok(['snapshot', 'list', file]);
    } finally {
      await holder.release();
    }
  });
});

describe('snapshot revert', () => {
  it('refuses without --yes when there is no terminal to ask: exit 2, nothing changed', async () => {
    const before = dirState(dir);
    const r = await runCli(['snapshot', 'revert', file, 'one']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/pass --yes/);
    expect(r.stdout).toBe('');
    expect(dirState(dir)).toEqual(before);
    expect((await state()).bytes).toEqual([1, 2, 3]);
  });

  it('an answer on a piped stdin is not a confirmation', async () => {
    const r = await runCli(['snapshot', 'revert', file, 'one'], { input: 'y\n' });
    expect(r.code).toBe(2);
    expect((await state()).bytes).toEqual([1, 2, 3]);
  });

  it('--dry-run says what would happen and changes nothing (exit 0), as text or JSON', async () => {
    const before = dirState(dir);
    const r = await ok(['snapshot', 'revert', file, 'one', '--dry-run']);
    expect(r.stdout).toMatch(/^would revert .* to snapshot one, discarding the current state\n$/);
    const j = await ok(['--json', 'snapshot', 'revert', file, 'one', '-n']);
    expect(JSON.parse(j.stdout)).toEqual({ dry_run: true, action: 'revert', snapshot: 'one', keepCurrentAs: null });
    expect(dirState(dir)).toEqual(before);
  });

  it('--yes reverts: the current state becomes the snapshot\'s', async () => {
    const r = await ok(['snapshot', 'revert', file, 'one', '--yes']);
    expect(r.stdout).toBe('reverted to one\n');
    expect((await state()).bytes).toEqual([1, 0, 0]);
    await ok(['-y', 'snapshot', 'revert', file, 'two']);
    expect((await state()).bytes).toEqual([1, 2, 0]);
  });

  it('--keep-current-as needs no confirmation and keeps the current state', async () => {
    const r = await ok(['snapshot', 'revert', file, 'one', '--keep-current-as', 'kept', '--json']);
    expect(JSON.parse(r.stdout)).toEqual({ action: 'revert', snapshot: 'one', keepCurrentAs: 'kept' });
    expect(await state()).toEqual({ bytes: [1, 0, 0], snapshots: ['one', 'two', 'kept'] });
    await ok(['snapshot', 'revert', file, 'kept', '--yes']);
    expect((await state()).bytes).toEqual([1, 2, 3]);
  });

  it('an unknown snapshot is exit 10 (SNAPSHOT_NOT_FOUND), also with --dry-run', async () => {
    for (const extra of [['--yes'], ['--dry-run']]) {
      const r = await runCli(['snapshot', 'revert', file, 'nope', ...extra]);
      expect(r.code).toBe(10);
      expect(r.stderr).toContain('[SNAPSHOT_NOT_FOUND]');
    }
  });
});

describe('snapshot delete', () => {
  it('refuses without --yes when there is no terminal: exit 2, nothing changed', async () => {
    const before = dirState(dir);
    const r = await runCli(['snapshot', 'delete', file, 'two']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/pass --yes/);
    expect(dirState(dir)).toEqual(before);
  });

  it('--dry-run changes nothing', async () => {
    const before = dirState(dir);
    const r = await ok(['snapshot', 'delete', file, 'two', '--dry-run']);
    expect(r.stdout).toMatch(/^would delete snapshot two of /);
    expect(dirState(dir)).toEqual(before);
  });

  it('--yes deletes it; the current state reads as before', async () => {
    const r = await ok(['snapshot', 'delete', file, 'two', '--yes', '--json']);
    expect(JSON.parse(r.stdout)).toEqual({ action: 'delete', snapshot: 'two' });
    expect(await state()).toEqual({ bytes: [1, 2, 3], snapshots: ['one'] });
  });

  it('an unknown snapshot is exit 10', async () => {
    const r = await runCli(['snapshot', 'delete', file, 'nope', '--yes']);
    expect(r.code).toBe(10);
    expect(r.stderr).toContain('[SNAPSHOT_NOT_FOUND]');
  });

  it('a disk that does not exist is exit 10 for every snapshot command', async () => {
    // Distinct paths: concurrent writers of one missing disk may see each other's lock.
    const missing = (n: number) => path.join(dir, `missing${n}.chain`);
    const results = await Promise.all([
      runCli(['snapshot', 'list', missing(1)]),
      runCli(['snapshot', 'create', missing(2), 'x']),
      runCli(['snapshot', 'revert', missing(3), 'x', '--yes']),
      runCli(['snapshot', 'delete', missing(4), 'x', '--yes']),
    ]);
    expect(results.map((r) => r.code)).toEqual([10, 10, 10, 10]);
    for (const r of results) expect(r.stderr).toContain('[NOT_FOUND]');
  });
});
