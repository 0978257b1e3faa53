/**
 * ContentBuilder: pages built from hashes and pages stored already (an incremental
 * chain backup names an unchanged page of its base again) make one list, read back
 * page by page as pushed; a stored page goes only where a page starts, and a short
 * one only last.
 */
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { HASH_SIZE, LIST_BLOB_HASHES } from '../../lib/format/repo-limits.js';
import { ContentBuilder, contentPages } from '../../lib/repo/content-list.js';
import { PackWriter } from '../../lib/repo/pack-writer.js';
import { Repository } from '../../lib/repo/repository.js';
import { codeOf } from '../helpers/errors.js';
import { tempDir } from '../helpers/temp-dir.js';

const { dir, cleanup } = tempDir('deltadisk-content-list-');
afterAll(cleanup);

const CS = 64 * 1024;

async function collect(repo: Repository, index: Awaited<ReturnType<Repository['loadIndex']>>, c: Awaited<ReturnType<ContentBuilder['finish']>>): Promise<Buffer[]> {
  const out: Buffer[] = [];
  for await (const page of contentPages(repo, index, c)) out.push(Buffer.from(page));
  return out;
}

describe('ContentBuilder', () => {
  it('mixes stored pages with built ones, and refuses a stored page out of place', async () => {
    const root = path.join(dir, 'repo');
    await Repository.init(root);
    const repo = await Repository.open(root, { lock: 'shared', purpose: 'test' });
    try {
      const index = await repo.loadIndex();
      const writer = new PackWriter(repo.backend, index, { packSize: repo.config.packSize });
      // A first list of two full pages and a short one.
      const pages = [randomBytes(LIST_BLOB_HASHES * HASH_SIZE), randomBytes(LIST_BLOB_HASHES * HASH_SIZE), randomBytes(5 * HASH_SIZE)];
      const first = new ContentBuilder(writer, CS);
      for (const p of pages) await first.pushMany(p, (p.length / HASH_SIZE) * CS);
      const a = await first.finish();
      await writer.flush();
      expect(a.lists).toHaveLength(3);

      // A second one that builds its middle page anew and names the others again.
      const middle = randomBytes(LIST_BLOB_HASHES * HASH_SIZE);
      const second = new ContentBuilder(writer, CS);
      second.pushPage(a.lists![0]!, LIST_BLOB_HASHES, LIST_BLOB_HASHES * CS);
      await second.pushMany(middle, LIST_BLOB_HASHES * CS);
      second.pushPage(a.lists![2]!, 5, 5 * CS);
      const b = await second.finish();
      await writer.flush();
      expect(b).toMatchObject({ count: 2 * LIST_BLOB_HASHES + 5, size: (2 * LIST_BLOB_HASHES + 5) * CS, chunkSize: CS });
      expect(b.lists![0]!.equals(a.lists![0]!) && b.lists![2]!.equals(a.lists![2]!)).toBe(true);
      const read = await collect(repo, index, b);
      expect(read.map((p) => p.toString('hex'))).toEqual([pages[0]!, middle, pages[2]!].map((p) => p.toString('hex')));

      // Out of place: inside a page being built, and anything after a short page.
      const third = new ContentBuilder(writer, CS);
      await third.push(randomBytes(HASH_SIZE), CS);
      expect(await codeOf(Promise.resolve().then(() => third.pushPage(a.lists![0]!, LIST_BLOB_HASHES, 0)))).toBe('INVALID_ARGUMENT');
      const fourth = new ContentBuilder(writer, CS);
      fourth.pushPage(a.lists![2]!, 5, 5 * CS);
      expect(await codeOf(fourth.push(randomBytes(HASH_SIZE), CS))).toBe('INVALID_ARGUMENT');
      expect(await codeOf(Promise.resolve().then(() => fourth.pushPage(a.lists![2]!, 5, 5 * CS)))).toBe('INVALID_ARGUMENT');
      await writer.abort();
    } finally {
      await repo.close();
    }
  });
});
