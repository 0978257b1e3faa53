/**
 * writeNewFile: whatever the buffers (aligned or not, any lengths), the new file
 * holds exactly their bytes back to back; the aligned part of an aligned first buffer
 * goes directly, on the real file system and on the in-memory one (which holds
 * direct transfers to the kernel's alignment rules); a file system that refuses
 * direct writes gets the whole content through the page cache.
 */
import fs from 'node:fs';
import path from 'node:path';
import fc from 'fast-check';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { alignedBuffer, DIRECT_ALIGN } from '../../lib/io/aligned-buffer.js';
import { MemoryFileSystem } from '../../lib/io/memory-file-system.js';
import { nodeFileSystem } from '../../lib/io/node-file-system.js';
import { writeNewFile } from '../../lib/io/write-new-file.js';
import { DirectProbeFS } from '../helpers/direct-fs.js';
import { propertyRuns, tempDir } from '../helpers/temp-dir.js';

let dir: string;
let cleanup: () => void;
beforeEach(() => ({ dir, cleanup } = tempDir('deltadisk-newfile-')));
afterEach(() => cleanup());

function filled(b: Buffer, seed: number): Buffer {
  for (let i = 0; i < b.length; i++) b[i] = (i * 31 + seed) & 0xff;
  return b;
}

const shapes = fc.record({
  first: fc.integer({ min: 0, max: 5 * DIRECT_ALIGN + 7 }),
  alignedFirst: fc.boolean(),
  rest: fc.array(fc.integer({ min: 0, max: 3 * DIRECT_ALIGN }), { maxLength: 3 }),
});

describe('writeNewFile', () => {
  it('writes exactly the bytes given, directly where aligned, on the real and the in-memory file system', async () => {
    const mem = new MemoryFileSystem();
    await mem.mkdirp('/m');
    let n = 0;
    await fc.assert(
      fc.asyncProperty(shapes, async ({ first, alignedFirst, rest }) => {
        const data = [filled(alignedFirst ? alignedBuffer(first) : Buffer.alloc(first), 1), ...rest.map((len, i) => filled(Buffer.alloc(len), i + 2))];
        const want = Buffer.concat(data);
        const shouldGoDirect = alignedFirst && first >= DIRECT_ALIGN;
        for (const [probe, p] of [
          [new DirectProbeFS(nodeFileSystem), path.join(dir, `f${n}`)],
          [new DirectProbeFS(mem), `/m/f${n}`],
        ] as const) {
          const { direct } = await writeNewFile(probe, p, data);
          expect(direct).toBe(shouldGoDirect);
          expect(probe.directBytes).toBe(shouldGoDirect ? first - (first % DIRECT_ALIGN) : 0);
          expect(probe.directBytes + probe.plainBytes).toBe(want.length);
          const h = await probe.inner.open(p, 'read');
          const got = Buffer.alloc(want.length + 1);
          expect(await h.read(got, 0, got.length, 0)).toBe(want.length);
          await h.close();
          expect(got.subarray(0, want.length).equals(want)).toBe(true);
        }
        n++;
      }),
      { numRuns: propertyRuns(40) },
    );
  });

  it('refuses an existing name without touching it', async () => {
    const p = path.join(dir, 'taken');
    fs.writeFileSync(p, 'keep');
    await expect(writeNewFile(nodeFileSystem, p, [filled(alignedBuffer(2 * DIRECT_ALIGN), 3)])).rejects.toMatchObject({ code: 'EEXIST' });
    expect(fs.readFileSync(p, 'utf8')).toBe('keep');
  });

  it('writes it all through the page cache when the file system refuses the direct write', async () => {
    const probe = new DirectProbeFS(nodeFileSystem, 0);
    const data = [filled(alignedBuffer(3 * DIRECT_ALIGN + 10), 4), filled(Buffer.alloc(99), 5)];
    const p = path.join(dir, 'refused');
    expect(await writeNewFile(probe, p, data)).toEqual({ direct: false });
    expect(probe.directBytes).toBe(0);
    expect(fs.readFileSync(p).equals(Buffer.concat(data))).toBe(true);
  });
});
