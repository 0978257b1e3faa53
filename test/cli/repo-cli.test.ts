/**
 * The repository commands as a user runs them: the built CLI as a real process,
 * checking exit codes (0, 2 usage/unconfirmed, 3 warnings, 10 not found, 11 locked,
 * check's 0/2/3), JSON lines, and what lands on disk.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { encodeRepoLock } from '../../lib/format/repo-lock.js';
import { cli, jsonLines, seeded } from '../helpers/repo-cli.js';
import { snapshotTree, writeTree } from '../helpers/repo.js';
import { tempDir } from '../helpers/temp-dir.js';

let dir: string;
let cleanup: () => void;
let repo: string;
let src: string;

beforeEach(async () => {
  ({ dir, cleanup } = tempDir('deltadisk-cli-'));
  repo = path.join(dir, 'repo');
  src = path.join(dir, 'src');
  writeTree(src, { 'a.txt': 'hello\n', 'sub/b.img': seeded('b', 3 << 20), 'sub/c': seeded('c', 200_000) });
  expect((await cli(['repo', 'init', repo])).code).toBe(0);
});
afterEach(() => cleanup());

async function backupId(args: string[] = []): Promise<string> {
  const r = await cli(['backup', src, '--repo', repo, '--json', ...args]);
  expect(r.code, r.stderr).toBe(0);
  const summary = jsonLines(r.stdout).find((l) => l.message_type === 'summary')!;
  return summary.backup_id as string;
}

describe('deltadisk repository commands', () => {
  it('init refuses a non-empty directory; a missing repository is exit 10', async () => {
    expect((await cli(['repo', 'init', repo])).code).toBe(1);
    const r = await cli(['snapshots', '--repo', path.join(dir, 'nope')]);
    expect(r.code).toBe(10);
    expect(r.stderr).toMatch(/REPO_NOT_FOUND/);
    expect((await cli(['snapshots'])).code).toBe(2);
  });

  it('keeps the index cache in DELTADISK_CACHE_DIR, and none with --no-cache', async () => {
    const cacheDir = path.join(dir, 'cache');
    const env = { DELTADISK_CACHE_DIR: cacheDir };
    expect((await cli(['backup', src, '--repo', repo, '--no-cache'], env)).code).toBe(0);
    expect(fs.existsSync(cacheDir)).toBe(false);
    expect((await cli(['backup', src, '--repo', repo], env)).code).toBe(0);
    const id = (JSON.parse(fs.readFileSync(path.join(repo, 'config'), 'utf8')) as { id: string }).id;
    expect(fs.readdirSync(cacheDir).filter((n) => n.endsWith('.index'))).toEqual([`${id}.index`]);
  });

  it('backs up with a JSON summary, lists, and restores byte for byte', async () => {
    const r = await cli(['backup', src, '--repo', repo, '--tag', 'nightly', '--json']);
    expect(r.code).toBe(0);
    const summary = jsonLines(r.stdout).find((l) => l.message_type === 'summary')!;
    expect(summary).toMatchObject({ dry_run: false, files: 3, dirs: 2, warnings: 0, total_bytes_processed: 6 + (3 << 20) + 200_000 });
    const list = JSON.parse((await cli(['snapshots', '--repo', repo, '--json'])).stdout) as { id: string; tags: string[] }[];
    expect(list.map((b) => [b.id, b.tags])).toEqual([[summary.backup_id, ['nightly']]]);
    const human = await cli(['snapshots', '--repo', repo]);
    expect(human.stdout).toContain((summary.backup_id as string).slice(0, 8));
    const out = path.join(dir, 'out');
    const res = await cli(['restore', 'latest', '--repo', repo, '--target', out, '--verify', '--json']);
    expect(res.code, res.stderr).toBe(0);
    expect(jsonLines(res.stdout).find((l) => l.message_type === 'summary')).toMatchObject({ files: 3, verified: true });
    expect(snapshotTree(path.join(out, 'src'))).toEqual(snapshotTree(src));
    // Again into the same place: refused without --overwrite (exit 1), done with it.
    expect((await cli(['restore', 'latest', '--repo', repo, '--target', out])).code).toBe(1);
    expect((await cli(['restore', 'latest', '--repo', repo, '--target', out, '--overwrite'])).code).toBe(0);
    expect((await cli(['restore', 'deadbeef', '--repo', repo, '--target', out])).code).toBe(10);
    const part = path.join(dir, 'part');
    expect((await cli(['restore', 'latest', '--repo', repo, '--target', part, '--include', 'src/sub/c'])).code).toBe(0);
    expect(Object.keys(snapshotTree(part))).toEqual(['src', 'src/sub', 'src/sub/c']);
  });

  it('completes with warnings (exit 3) when a source cannot be read, with a JSON error line', async () => {
    const r = await cli(['backup', src, '/proc/self/clear_refs', '--repo', repo, '--json']);
    expect(r.code).toBe(3);
    const err = jsonLines(r.stderr).find((l) => l.message_type === 'error')!;
    expect(err).toMatchObject({ during: 'backup', item: '/proc/self/clear_refs' });
    expect(jsonLines(r.stdout).find((l) => l.message_type === 'summary')).toMatchObject({ warnings: 1, files: 3 });
    const human = await cli(['backup', src, '/proc/self/clear_refs', '--repo', repo]);
    expect(human.code).toBe(3);
    expect(human.stderr).toMatch(/warning: \/proc\/self\/clear_refs/);
  });

  it('writes nothing in a dry run', async () => {
    const r = await cli(['backup', src, '--repo', repo, '--dry-run', '--json']);
    expect(r.code).toBe(0);
    expect(jsonLines(r.stdout).find((l) => l.message_type === 'summary')).toMatchObject({ dry_run: true, backup_id: null });
    expect(fs.readdirSync(path.join(repo, 'snapshots'))).toEqual([]);
  });

  it('check: 0 clean, 3 leaks only, 2 damage, 1 could not run', async () => {
    const id = await backupId();
    expect((await cli(['check', '--repo', repo, '--read-data'])).code).toBe(0);
    fs.unlinkSync(path.join(repo, 'snapshots', id));
    const leaks = await cli(['check', '--repo', repo, '--json']);
    expect(leaks.code).toBe(3);
    expect(jsonLines(leaks.stdout).find((l) => l.message_type === 'summary')).toMatchObject({ errors: 0 });
    await backupId();
    const packs = fs.readdirSync(path.join(repo, 'packs')).flatMap((s) => fs.readdirSync(path.join(repo, 'packs', s)).map((f) => path.join(repo, 'packs', s, f)));
    for (const p of packs) fs.truncateSync(p, 100);
    const bad = await cli(['check', '--repo', repo]);
    expect(bad.code).toBe(2);
    expect(bad.stdout).toMatch(/error: pack .* is 100 bytes/);
    expect((await cli(['check', '--repo', path.join(dir, 'nope')])).code).toBe(1);
    expect((await cli(['check'])).code).toBe(2);
  });

  it('forget and prune ask first, do nothing in a dry run, and reclaim with --yes', async () => {
    await backupId();
    fs.writeFileSync(path.join(src, 'sub', 'c'), seeded('c2', 200_000));
    await backupId();
    expect((await cli(['forget', '--repo', repo, '--keep-last', '1'])).code).toBe(2);
    const dry = await cli(['forget', '--repo', repo, '--keep-last', '1', '--dry-run']);
    expect(dry.code).toBe(0);
    expect(dry.stdout).toMatch(/would remove/);
    expect(fs.readdirSync(path.join(repo, 'snapshots'))).toHaveLength(2);
    expect((await cli(['forget', '--repo', repo])).code).toBe(2); // no policy
    const f = await cli(['forget', '--repo', repo, '--keep-last', '1', '--yes', '--json']);
    expect(f.code).toBe(0);
    expect((JSON.parse(f.stdout) as { removed: string[] }).removed).toHaveLength(1);
    expect((await cli(['prune', '--repo', repo])).code).toBe(2);
    const pd = await cli(['prune', '--repo', repo, '--dry-run', '--json', '--repack-threshold', '0.01']);
    expect(jsonLines(pd.stdout).find((l) => l.message_type === 'summary')).toMatchObject({ dry_run: true });
    const p = await cli(['prune', '--repo', repo, '--yes', '--json', '--repack-threshold', '0.01']);
    expect(p.code).toBe(0);
    expect(jsonLines(p.stdout).find((l) => l.message_type === 'summary')).toMatchObject({ completed: true, packs_repacked: 1 });
    expect((await cli(['check', '--repo', repo, '--read-data'])).code).toBe(0);
  });

  it('stats and diff', async () => {
    const a = await backupId();
    fs.writeFileSync(path.join(src, 'new'), 'new file');
    fs.unlinkSync(path.join(src, 'a.txt'));
    fs.writeFileSync(path.join(src, 'sub', 'c'), seeded('c3', 200_000));
    const b = await backupId();
    const s = JSON.parse((await cli(['stats', '--repo', repo, '--json'])).stdout) as { backups: number; dedupRatio: number };
    expect(s.backups).toBe(2);
    expect(s.dedupRatio).toBeGreaterThan(1.5);
    expect((await cli(['stats', '--repo', repo, b.slice(0, 6)])).stdout).toMatch(/dedup ratio/);
    const d = await cli(['diff', a, b, '--repo', repo]);
    expect(d.code).toBe(0);
    expect(d.stdout).toMatch(/^\+ {2}src\/new$/m);
    expect(d.stdout).toMatch(/^- {2}src\/a\.txt$/m);
    expect(d.stdout).toMatch(/^M {2}src\/sub\/c /m);
    const dj = JSON.parse((await cli(['diff', a, b, '--repo', repo, '--json'])).stdout) as { stats: { added: number; removed: number; modified: number } };
    expect(dj.stats).toMatchObject({ added: 1, removed: 1, modified: 1 });
    expect((await cli(['diff', a, b])).code).toBe(2);
  });

  it('exit 11 while locked; unlock --repo removes only what is stale', async () => {
    const t = new Date().toISOString();
    const token = '12'.repeat(16);
    fs.writeFileSync(path.join(repo, 'locks', token), encodeRepoLock({ kind: 'exclusive', purpose: 'prune', host: 'other.example', pid: 1, bootId: 'b', netns: 'n', created: t, refreshed: t, token }));
    const r = await cli(['backup', src, '--repo', repo]);
    expect(r.code).toBe(11);
    expect(r.stderr).toMatch(/locked: exclusive lock of pid 1 on other.example/);
    expect((await cli(['unlock', '--repo', repo])).stdout).toMatch(/no stale locks/);
    expect((await cli(['unlock', '--repo', repo, '--remove-all'])).code).toBe(2); // not confirmed
    const u = await cli(['unlock', '--repo', repo, '--remove-all', '--yes']);
    expect(u.code).toBe(0);
    expect(u.stdout).toMatch(/removed live exclusive lock of pid 1 on other.example/);
    expect((await cli(['backup', src, '--repo', repo])).code).toBe(0);
  });
});
