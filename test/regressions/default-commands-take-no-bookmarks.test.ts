/**
 * Found by the README's example property test: `diskCommands()` took bookmarks by
 * default, and the example's own command (snapshot, write, delete the snapshot)
 * streams the bookmarked layer into its child, which drops the bookmark. The model,
 * which the user's command does not reconcile, still had it, and a later read of it
 * failed. Bookmark commands are now asked for with `bookmarks: true`.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import { expect, it } from 'vitest';
import { Disk } from '../../lib/index.js';
import { BookmarkCommand, diskCommands } from '../../lib/testing/index.js';

it('deleting a snapshot taken after a bookmark may drop the bookmark', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bookmark-drop-'));
  try {
    const disk = await Disk.create(path.join(dir, 'd.chain'), { size: 65536, blockSize: 4096 });
    await disk.write(0, new Uint8Array(1000).fill(1));
    await disk.bookmark('b');
    await disk.snapshot('guard');
    await disk.write(0, new Uint8Array(1000).fill(2));
    await disk.deleteSnapshot('guard');
    expect(disk.snapshots().map((s) => s.name)).not.toContain('b');
    await disk.close();
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

it('diskCommands generates bookmark commands only when asked', () => {
  const generated = (bookmarks?: boolean) =>
    fc.sample(fc.oneof(...diskCommands({ virtualSize: 65536, blockSize: 4096, ...(bookmarks === undefined ? {} : { bookmarks }) })), { numRuns: 2000, seed: 1 });
  expect(generated().some((c) => c instanceof BookmarkCommand)).toBe(false);
  expect(generated(false).some((c) => c instanceof BookmarkCommand)).toBe(false);
  expect(generated(true).some((c) => c instanceof BookmarkCommand)).toBe(true);
});
