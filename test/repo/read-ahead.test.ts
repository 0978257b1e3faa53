/**
 * Read-ahead over a real file: the pieces cover the file to its end whatever size
 * it was expected to have, every piece but the last is a whole number of `align`
 * bytes (the fixed chunker cuts chunks out of them), and a small file does not
 * cost `depth` full pieces of memory.
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { nodeFileSystem } from '../../lib/io/node-file-system.js';
import { readAhead, type ReadAheadOptions } from '../../lib/repo/read-ahead.js';
import { propertyRuns, tempDir } from '../helpers/temp-dir.js';

const { dir, cleanup } = tempDir('deltadisk-read-ahead-');
afterAll(cleanup);

async function readAll(file: string, options: ReadAheadOptions, recycle = true): Promise<Buffer[]> {
  const h = await nodeFileSystem.open(file, 'read');
  try {
    const out: Buffer[] = [];
    const reader = readAhead(h, options);
    for await (const piece of reader) {
      out.push(Buffer.from(piece));
      if (recycle) reader.recycle(piece);
    }
    return out;
  } finally {
    await h.close();
  }
}

describe('readAhead', () => {
  it('yields the whole file in aligned pieces, whether the file is as expected, grew or shrank', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 0, max: 40_000 }),
        fc.integer({ min: -20_000, max: 20_000 }),
        fc.constantFrom(1, 512, 4096),
        fc.integer({ min: 1, max: 4 }),
        fc.integer({ min: 1, max: 4 }),
        fc.boolean(),
        async (size, drift, align, perPiece, depth, recycle) => {
          const file = path.join(dir, 'p.bin');
          const data = randomBytes(size);
          fs.writeFileSync(file, data);
          const pieceSize = align * perPiece * (align === 1 ? 1000 : 1);
          const expectedSize = Math.max(0, size + drift);
          const pieces = await readAll(file, { pieceSize, depth, expectedSize, align }, recycle);
          expect(Buffer.concat(pieces).equals(data)).toBe(true);
          for (const p of pieces.slice(0, -1)) {
            expect(p.length % align).toBe(0);
            expect(p.length).toBeLessThanOrEqual(pieceSize);
          }
          expect(pieces.every((p) => p.length > 0)).toBe(true);
        },
      ),
      { numRuns: propertyRuns(60) },
    );
  });

  it('reads a small file into a buffer of about its size, not into depth × pieceSize', async () => {
    const file = path.join(dir, 'small.bin');
    const data = randomBytes(8684);
    fs.writeFileSync(file, data);
    const h = await nodeFileSystem.open(file, 'read');
    try {
      const buffers: number[] = [];
      for await (const piece of readAhead(h, { pieceSize: 4 * 1024 * 1024, depth: 3, expectedSize: data.length })) buffers.push(piece.buffer.byteLength);
      expect(buffers).toEqual([data.length + 1]);
    } finally {
      await h.close();
    }
  });

  it('without an expected size, reads full pieces to the end', async () => {
    const file = path.join(dir, 'plain.bin');
    const data = randomBytes(10_000);
    fs.writeFileSync(file, data);
    const pieces = await readAll(file, { pieceSize: 4096 });
    expect(pieces.map((p) => p.length)).toEqual([4096, 4096, 1808]);
    expect(Buffer.concat(pieces).equals(data)).toBe(true);
  });
});
