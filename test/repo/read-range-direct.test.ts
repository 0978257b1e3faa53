/**
 * LocalBackend.readRangeDirect: the bytes of any range (unaligned offsets and
 * lengths, up to the file's last byte) come back exactly, from pooled aligned
 * memory; a range past the end is TRUNCATED; a file system without direct I/O makes
 * it decline (undefined), so callers read through the page cache instead.
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import fc from 'fast-check';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { MemoryFileSystem } from '../../lib/io/memory-file-system.js';
import { nodeFileSystem } from '../../lib/io/node-file-system.js';
import { LocalBackend } from '../../lib/repo/local-backend.js';
import { DirectProbeFS } from '../helpers/direct-fs.js';
import { codeOf } from '../helpers/errors.js';
import { propertyRuns, tempDir } from '../helpers/temp-dir.js';

const NAME = 'ab'.repeat(32);
const SIZE = 3 * 65536 + 1234;

let dir: string;
let cleanup: () => void;
beforeEach(() => ({ dir, cleanup } = tempDir('deltadisk-rrd-')));
afterEach(() => cleanup());

async function backendWithPack(probe: DirectProbeFS, root: string, data: Buffer): Promise<LocalBackend> {
  const b = new LocalBackend(probe, root);
  await b.init();
  await b.commit([await b.stage('pack', NAME, [data])]);
  return b;
}

describe('LocalBackend.readRangeDirect', () => {
  it('returns exactly the bytes of any range, read directly, on the real and the in-memory file system', async () => {
    const data = randomBytes(SIZE);
    const mem = new MemoryFileSystem();
    await mem.mkdirp('/m');
    const real = new DirectProbeFS(nodeFileSystem);
    const virt = new DirectProbeFS(mem);
    const backends = [await backendWithPack(real, path.join(dir, 'repo'), data), await backendWithPack(virt, '/m/repo', data)];
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 0, max: SIZE - 1 }), fc.integer({ min: 1, max: SIZE }), async (offset, len) => {
        const length = Math.min(len, SIZE - offset);
        for (const b of backends) {
          const leased = await b.readRangeDirect('pack', NAME, offset, length);
          expect(leased).toBeDefined();
          expect(leased!.bytes.equals(data.subarray(offset, offset + length))).toBe(true);
          leased!.release();
        }
      }),
      { numRuns: propertyRuns(60) },
    );
    expect(real.directReadBytes).toBeGreaterThan(0);
    expect(virt.directReadBytes).toBeGreaterThan(0);
    for (const b of backends) await b.close();
  });

  it('refuses a range past the end of the file (TRUNCATED)', async () => {
    const b = await backendWithPack(new DirectProbeFS(nodeFileSystem), path.join(dir, 'repo'), randomBytes(SIZE));
    expect(await codeOf(b.readRangeDirect('pack', NAME, SIZE - 10, 11))).toBe('TRUNCATED');
    expect(await codeOf(b.readRangeDirect('pack', 'cd'.repeat(32), 0, 1))).toBe('NOT_FOUND');
    await b.close();
  });

  it('declines where the file system has no direct I/O', async () => {
    const root = path.join(dir, 'repo');
    const data = randomBytes(SIZE);
    const b = await backendWithPack(new DirectProbeFS(nodeFileSystem, Infinity, false), root, data);
    expect(await b.readRangeDirect('pack', NAME, 5, 100)).toBeUndefined();
    expect((await b.readRange('pack', NAME, 5, 100)).equals(data.subarray(5, 105))).toBe(true);
    expect(fs.existsSync(path.join(root, 'packs', 'ab', NAME))).toBe(true);
    await b.close();
  });
});
