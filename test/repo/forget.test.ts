/**
 * `forget` on a real repository: a policy applies to each series (host and source
 * paths) on its own, `tags` narrows what is considered, a dry run removes nothing,
 * and `only` (what a confirmation showed) bounds what is removed, so a backup made
 * between the confirmation and the forget never widens it; and `latest` with a
 * filter names the newest backup of one series.
 */
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { backup, forget, Repository } from '../../lib/index.js';
import { withRepo, writeTree } from '../helpers/repo.js';
import { tempDir } from '../helpers/temp-dir.js';

let dir: string;
let cleanup: () => void;
let repoDir: string;

beforeEach(async () => {
  ({ dir, cleanup } = tempDir('deltadisk-forget-'));
  repoDir = path.join(dir, 'repo');
  await Repository.init(repoDir);
  writeTree(dir, { 'a/file': 'A', 'b/file': 'B' });
});
afterEach(() => cleanup());

async function backupOf(src: string, options: { host?: string; tags?: string[] } = {}): Promise<string> {
  return withRepo(repoDir, 'shared', async (r) => (await backup(r, [path.join(dir, src)], options)).id);
}

const listed = (): Promise<string[]> => withRepo(repoDir, false, async (r) => (await r.listBackups()).map((b) => b.id).sort());

describe('forget', () => {
  it('applies the policy to each host and source separately', async () => {
    const a1 = await backupOf('a');
    const a2 = await backupOf('a');
    const b1 = await backupOf('b');
    const other1 = await backupOf('a', { host: 'other-host' });
    const other2 = await backupOf('a', { host: 'other-host' });

    const dry = await withRepo(repoDir, false, (r) => forget(r, { keepLast: 1, dryRun: true }));
    expect(dry.removed).toEqual([]);
    expect(dry.groups.flatMap((g) => g.remove.map((x) => x.id)).sort()).toEqual([a1, other1].sort());
    expect(await listed()).toHaveLength(5);

    const done = await withRepo(repoDir, 'maintenance', (r) => forget(r, { keepLast: 1 }));
    expect(done.removed.sort()).toEqual([a1, other1].sort());
    expect(await listed()).toEqual([a2, b1, other2].sort());
  });

  it('considers only backups carrying every tag given', async () => {
    const n1 = await backupOf('a', { tags: ['nightly'] });
    const n2 = await backupOf('a', { tags: ['nightly'] });
    const manual = await backupOf('a');
    const done = await withRepo(repoDir, 'maintenance', (r) => forget(r, { keepLast: 1, tags: ['nightly'] }));
    expect(done.removed).toEqual([n1]);
    expect(await listed()).toEqual([n2, manual].sort());
  });

  it('removes no more than was confirmed, though a backup made since drops another', async () => {
    const a1 = await backupOf('a');
    const a2 = await backupOf('a');
    const shown = await withRepo(repoDir, false, (r) => forget(r, { keepLast: 1, dryRun: true }));
    const confirmed = new Set(shown.groups.flatMap((g) => g.remove.map((x) => x.id)));
    expect([...confirmed]).toEqual([a1]);
    const a3 = await backupOf('a'); // lands between the confirmation and the forget
    const done = await withRepo(repoDir, 'maintenance', (r) => forget(r, { keepLast: 1, only: confirmed }));
    expect(done.removed).toEqual([a1]);
    expect(done.groups[0]!.keep).toContainEqual(expect.objectContaining({ id: a2, reasons: ['unconfirmed'] }));
    expect(await listed()).toEqual([a2, a3].sort());
  });
});

describe('latest', () => {
  it('names the newest backup the filter admits', async () => {
    const a = await backupOf('a', { tags: ['nightly'] });
    const b = await backupOf('b', { host: 'db-host' });
    const aOther = await backupOf('a', { host: 'other-host' });
    await withRepo(repoDir, false, async (r) => {
      expect(await r.resolveBackup('latest')).toBe(aOther);
      expect(await r.resolveBackup('latest', { paths: [path.join(dir, 'b')] })).toBe(b);
      expect(await r.resolveBackup('latest', { tags: ['nightly'] })).toBe(a);
      expect(await r.resolveBackup('latest', { host: 'other-host', paths: [path.join(dir, 'a')] })).toBe(aOther);
      await expect(r.resolveBackup('latest', { host: 'db-host', tags: ['nightly'] })).rejects.toMatchObject({ code: 'BACKUP_NOT_FOUND', message: expect.stringContaining('of host db-host tagged nightly') });
      await expect(r.resolveBackup('latest', { vm: true })).rejects.toMatchObject({ code: 'BACKUP_NOT_FOUND' });
      expect(await r.resolveBackup(b.slice(0, 8), { host: 'elsewhere' })).toBe(b);
    });
  });
});
