/**
 * Per-chunk compression: kept only where it saves space, always inflating back to the
 * exact bytes; a page of chunk hashes is searched for runs only (its zero hashes are
 * all it has to give), and loses nothing by it.
 */
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { Compression } from '../../lib/format/pack-header.js';
import { compressChunk, decompressChunk } from '../../lib/repo/compression.js';

/** A page of 16384 hashes: `random` of them SHA-256-like, then zero hashes (a sparse disk's tail). */
function page(random: number): Buffer {
  const p = Buffer.alloc(16384 * 32);
  randomBytes(random * 32).copy(p);
  return p;
}

describe('compressChunk', () => {
  it('stores random data as it is', async () => {
    const data = randomBytes(65536);
    const { stored, compression } = await compressChunk(data);
    expect(compression).toBe(Compression.NONE);
    expect(stored.equals(data)).toBe(true);
  });

  it.each(['any', 'runs'] as const)('deflates a half-sparse hash page (%s) to about its random half, and back exactly', async (search) => {
    const data = page(8192);
    const { stored, compression } = await compressChunk(data, search);
    expect(compression).toBe(Compression.DEFLATE);
    expect(stored.length).toBeLessThan(data.length / 2 + 4096);
    expect((await decompressChunk(stored, compression, data.length, 'page')).equals(data)).toBe(true);
  });

  it('run-only search of a hash page comes out no larger than the full search', async () => {
    const data = page(4096);
    const any = await compressChunk(data, 'any');
    const runs = await compressChunk(data, 'runs');
    expect(runs.stored.length).toBeLessThanOrEqual(any.stored.length);
  });

  it('keeps text compressible under the default search', async () => {
    const data = Buffer.from('the quick brown fox jumps over the lazy dog; '.repeat(2000));
    const { stored, compression } = await compressChunk(data);
    expect(compression).toBe(Compression.DEFLATE);
    expect(stored.length).toBeLessThan(data.length / 10);
  });
});
