/**
 * hashBlocks: the SHA-256 of each block, whichever thread computed it. Batches big
 * enough are split with the helper thread; these check the results against hashing
 * on this thread, for mixed sizes, zero (null) blocks, batches larger than the
 * helper's shared area, plain Uint8Arrays, and batches that overlap in time (one
 * of them then hashes here). The last test runs a real process: the idle helper
 * must not keep it alive.
 */
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { hashBlocks } from '../../lib/chain/block-hasher.js';

const sha = (b: Uint8Array): Buffer => createHash('sha256').update(b).digest();

function batch(sizes: readonly (number | null)[]): (Uint8Array | null)[] {
  return sizes.map((n) => (n === null ? null : randomBytes(n)));
}

async function expectHashes(blocks: (Uint8Array | null)[]): Promise<void> {
  const got = await hashBlocks(blocks);
  expect(got).toHaveLength(blocks.length);
  blocks.forEach((b, i) => {
    if (b === null) expect(got[i]).toBeUndefined();
    else expect(got[i]!.equals(sha(b))).toBe(true);
  });
}

describe('hashBlocks', () => {
  it('hashes small batches (on this thread) and large ones (split with the helper) alike', async () => {
    await expectHashes([]);
    await expectHashes(batch([4096]));
    await expectHashes(batch([65536, null, 65536, 65536, null, 65536, 65536, 65536, 65536]));
    await expectHashes(batch(Array.from({ length: 64 }, () => 65536)));
    await expectHashes(batch(Array.from({ length: 300 }, () => 4096)));
  });

  it('batches larger than the shared area: the helper takes what fits, this thread the rest', async () => {
    await expectHashes(batch(Array.from({ length: 40 }, () => 1024 * 1024)));
  });

  it('plain Uint8Arrays and views into larger buffers', async () => {
    const big = randomBytes(20 * 65536 + 17);
    const blocks: Uint8Array[] = [];
    for (let i = 0; i < 20; i++) blocks.push(new Uint8Array(big.buffer, big.byteOffset + 17 + i * 65536, 65536));
    await expectHashes(blocks);
  });

  it('overlapping batches are all right (the second one, finding the helper busy, hashes here)', async () => {
    const batches = Array.from({ length: 6 }, () => batch(Array.from({ length: 32 }, () => 65536)));
    const results = await Promise.all(batches.map((b) => hashBlocks(b)));
    results.forEach((r, k) => batches[k]!.forEach((b, i) => expect(r[i]!.equals(sha(b!))).toBe(true)));
  });

  it('an idle helper does not keep a process alive', () => {
    const module = path.resolve(import.meta.dirname, '../../dist/lib/chain/block-hasher.js');
    const script = `
      const { hashBlocks } = await import(${JSON.stringify(module)});
      const { randomBytes } = await import('node:crypto');
      const out = await hashBlocks(Array.from({ length: 16 }, () => randomBytes(65536)));
      console.log(out.filter((h) => h && h.length === 32).length);
    `;
    const started = Date.now();
    const stdout = execFileSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 20_000 });
    expect(stdout.trim()).toBe('16');
    expect(Date.now() - started).toBeLessThan(15_000);
  });
});
