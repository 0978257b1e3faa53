/**
 * Regression: a descriptor naming a base through a symlink that leads outside the
 * disk's directory was refused with one message when the symlink's target existed
 * ("leads outside … through a symbolic link") and another when it did not ("is a
 * symbolic link that cannot be followed safely"). Both were UNSAFE_PATH, but the
 * difference told whoever crafted the descriptor whether any host path exists (the
 * path-existence oracle of the instar test suite). Found by
 * test/chain/unsafe-paths.test.ts.
 */
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { nodeFileSystem } from '../../lib/io/node-file-system.js';
import { resolveReference } from '../../lib/io/path-guard.js';
import { tempDir } from '../helpers/temp-dir.js';

async function refusal(dir: string): Promise<unknown> {
  return resolveReference(nodeFileSystem, dir, 'link.raw', 'base image').then(
    () => 'resolved',
    (err: { code: string; message: string; path: string }) => ({ code: err.code, message: err.message, path: err.path }),
  );
}

describe('regression: symlink refusals do not reveal whether the target exists', () => {
  it('refuses a symlink out of the directory identically, dangling or not', async () => {
    const { dir: top, cleanup } = tempDir();
    try {
      const dir = path.join(top, 'vm');
      fs.mkdirSync(dir);
      const target = path.join(top, 'secret');
      fs.symlinkSync(target, path.join(dir, 'link.raw'));
      const dangling = await refusal(dir);
      fs.writeFileSync(target, 'x');
      const present = await refusal(dir);
      expect(present).toMatchObject({ code: 'UNSAFE_PATH' });
      expect(present).toEqual(dangling);
    } finally {
      cleanup();
    }
  });
});
