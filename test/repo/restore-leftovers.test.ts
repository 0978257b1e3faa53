/**
 * What a restore killed midway leaves behind, and what the next restore does with
 * it: the killed one leaves its temporary file (`<name>.tmp-<12 hex>`, owner-only)
 * and nothing under the final name; the next restore of the same name removes it
 * (the rule of atomic-replace.ts), and leaves alone whatever only looks like one: a
 * file restore did not create (its mode is not owner-only), a directory, a name of a
 * file it does not restore, a file the backup itself holds.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { backup, Repository, restore } from '../../lib/index.js';
import { cli, startCli } from '../helpers/repo-cli.js';
import { randomData, sha, snapshotTree, withRepo, writeTree } from '../helpers/repo.js';
import { tempDir } from '../helpers/temp-dir.js';
import { waitFor } from '../helpers/wait-for.js';

const MiB = 1024 * 1024;
let dir: string;
let cleanup: () => void;
let repo: string;
let src: string;
let target: string;

beforeEach(async () => {
  ({ dir, cleanup } = tempDir('deltadisk-restore-leftovers-'));
  repo = path.join(dir, 'repo');
  src = path.join(dir, 'src');
  target = path.join(dir, 'target');
  fs.mkdirSync(src);
});
afterEach(() => cleanup());

const tempNames = (d: string): string[] => fs.readdirSync(d).filter((n) => n.includes('.tmp-'));

describe('leftovers of an interrupted restore', () => {
  it('a restore SIGKILLed while writing leaves a temporary file, which the next restore removes', async () => {
    const big = randomData(384 * MiB);
    writeTree(src, { 'big.img': big, 'small.txt': 'hello' });
    expect((await cli(['repo', 'init', repo])).code).toBe(0);
    expect((await cli(['backup', src, '--repo', repo])).code).toBe(0);

    const run = startCli(['restore', 'latest', '--repo', repo, '--target', target]);
    const restoredSrc = path.join(target, path.basename(src));
    let seen = false;
    await waitFor(() => {
      if (run.child.exitCode !== null) return true;
      seen = fs.existsSync(restoredSrc) && tempNames(restoredSrc).some((n) => fs.statSync(path.join(restoredSrc, n)).size > 0);
      return seen;
    }, 30_000);
    run.child.kill('SIGKILL');
    const killed = await run.done;
    expect(seen, `the restore finished before it was killed: ${killed.stderr}`).toBe(true);
    expect(killed.signal).toBe('SIGKILL');
    const left = tempNames(restoredSrc);
    expect(left.length).toBeGreaterThan(0);
    expect(fs.existsSync(path.join(restoredSrc, 'big.img'))).toBe(false);

    const again = await cli(['restore', 'latest', '--repo', repo, '--target', target, '--overwrite']);
    expect(again.code, again.stderr).toBe(0);
    expect(tempNames(restoredSrc)).toEqual([]);
    expect(sha(fs.readFileSync(path.join(restoredSrc, 'big.img')))).toBe(sha(big));
    expect(fs.readFileSync(path.join(restoredSrc, 'small.txt'), 'utf8')).toBe('hello');
  }, 120_000);

  it('removes only what a restore of these names left', async () => {
    writeTree(src, { 'a.txt': 'A', 'b.txt': 'B', [`a.txt.tmp-${'c'.repeat(12)}`]: 'a file of the backup', 'sub/x': 'X' });
    fs.symlinkSync('b.txt', path.join(src, 'link'));
    fs.chmodSync(path.join(src, `a.txt.tmp-${'c'.repeat(12)}`), 0o600);
    await Repository.init(repo);
    const id = await withRepo(repo, 'shared', async (r) => (await backup(r, [src])).id);
    const out = path.join(target, path.basename(src));
    fs.mkdirSync(path.join(out, 'sub'), { recursive: true });
    const plant = (rel: string, mode: number, content = 'half written'): void => {
      fs.writeFileSync(path.join(out, rel), content);
      fs.chmodSync(path.join(out, rel), mode);
    };
    const outside = path.join(dir, 'outside');
    fs.writeFileSync(outside, 'outside');
    plant(`a.txt.tmp-${'0'.repeat(12)}`, 0o600); // removed
    plant(`sub/x.tmp-0123456789ab`, 0o600); // removed
    fs.symlinkSync(outside, path.join(out, `link.tmp-${'1'.repeat(12)}`)); // removed, target kept
    fs.symlinkSync(outside, path.join(out, `b.txt.tmp-${'2'.repeat(12)}`)); // removed
    plant(`a.txt.tmp-${'3'.repeat(12)}`, 0o644); // kept: not made by a restore
    plant(`a.txt.tmp-${'4'.repeat(11)}`, 0o600); // kept: not a temporary name
    plant(`a.txt.tmp-${'5'.repeat(12)}x`, 0o600); // kept
    plant(`c.txt.tmp-${'6'.repeat(12)}`, 0o600); // kept: c.txt is not restored
    fs.mkdirSync(path.join(out, `a.txt.tmp-${'7'.repeat(12)}`)); // kept: a directory
    plant(`a.txt.tmp-${'c'.repeat(12)}`, 0o600, 'stale'); // the backup's own file: replaced, not removed

    await withRepo(repo, 'shared', (r) => restore(r, id, { target, overwrite: true }));

    expect(fs.readFileSync(outside, 'utf8')).toBe('outside');
    expect(tempNames(out).sort()).toEqual(
      [`a.txt.tmp-${'3'.repeat(12)}`, `a.txt.tmp-${'4'.repeat(11)}`, `a.txt.tmp-${'5'.repeat(12)}x`, `a.txt.tmp-${'7'.repeat(12)}`, `a.txt.tmp-${'c'.repeat(12)}`, `c.txt.tmp-${'6'.repeat(12)}`].sort(),
    );
    expect(tempNames(path.join(out, 'sub'))).toEqual([]);
    const tree = snapshotTree(out);
    expect(tree[`a.txt.tmp-${'c'.repeat(12)}`]).toBe(snapshotTree(src)[`a.txt.tmp-${'c'.repeat(12)}`]);
    expect(tree['link']).toBe('link:b.txt');
    expect(fs.readFileSync(path.join(out, 'a.txt'), 'utf8')).toBe('A');
  });

  it('a restore of some paths leaves alone a file of the backup an earlier restore wrote', async () => {
    const own = `a.txt.tmp-${'c'.repeat(12)}`;
    writeTree(src, { 'a.txt': 'A', [own]: 'a file of the backup' });
    fs.chmodSync(path.join(src, own), 0o600);
    await Repository.init(repo);
    const id = await withRepo(repo, 'shared', async (r) => (await backup(r, [src])).id);
    await withRepo(repo, 'shared', (r) => restore(r, id, { target }));
    const out = path.join(target, path.basename(src));
    expect(fs.statSync(path.join(out, own)).mode & 0o777).toBe(0o600);

    await withRepo(repo, 'shared', (r) => restore(r, id, { target, overwrite: true, include: [`${path.basename(src)}/a.txt`] }));

    expect(fs.readFileSync(path.join(out, own), 'utf8')).toBe('a file of the backup');
    expect(fs.readFileSync(path.join(out, 'a.txt'), 'utf8')).toBe('A');
  });
});
