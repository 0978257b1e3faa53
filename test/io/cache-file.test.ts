/**
 * CacheFile on real files: reads are bounded before anything is allocated and never
 * fail (absent, too large, a directory in its place: a miss); writes make the private
 * directory, replace the file whole without leaving a temporary, and report failure
 * instead of throwing.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CacheFile } from '../../lib/io/cache-file.js';
import { nodeFileSystem } from '../../lib/io/node-file-system.js';
import { tempDir } from '../helpers/temp-dir.js';

let dir: string;
let cleanup: () => void;

beforeEach(() => {
  ({ dir, cleanup } = tempDir('deltadisk-cache-file-'));
});
afterEach(() => cleanup());

describe('CacheFile', () => {
  it('writes into a private directory it makes, and reads back what it wrote', async () => {
    const f = new CacheFile(nodeFileSystem, path.join(dir, 'cache', 'nested'), 'x.index');
    expect(await f.read(1024)).toBeUndefined();
    expect(await f.write(Buffer.from('first'))).toBe(true);
    expect(await f.write(Buffer.from('second, longer'))).toBe(true);
    expect((await f.read(1024))?.toString()).toBe('second, longer');
    expect(fs.statSync(f.dir).mode & 0o777).toBe(0o700);
    expect(fs.readdirSync(f.dir)).toEqual(['x.index']);
  });

  it('reads a file over the bound as a miss, and exactly at the bound whole', async () => {
    const f = new CacheFile(nodeFileSystem, dir, 'x.backups');
    fs.writeFileSync(f.path, Buffer.alloc(100, 7));
    expect(await f.read(99)).toBeUndefined();
    expect(await f.read(100)).toEqual(Buffer.alloc(100, 7));
  });

  it('reports a write it cannot make, and reads what is not a file as a miss', async () => {
    const blocked = path.join(dir, 'a file');
    fs.writeFileSync(blocked, 'where the cache directory should be');
    const f = new CacheFile(nodeFileSystem, blocked, 'x.index');
    expect(await f.write(Buffer.from('data'))).toBe(false);
    expect(await f.read(1024)).toBeUndefined();
    const d = new CacheFile(nodeFileSystem, dir, 'sub');
    fs.mkdirSync(d.path);
    expect(await d.read(1024)).toBeUndefined();
  });
});
