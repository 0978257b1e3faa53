/**
 * checksumBlocks: the CRC-32 and/or SHA-256 of each block, as asked, whichever
 * thread computed them. Batches big enough that ask for SHA-256 are split with the
 * helper thread once it has started; these check the results against computing
 * them on this thread, for mixed sizes, zero (null) blocks, batches larger than the
 * helper's shared area, blocks smaller than any disk's (more of them than the
 * shared area has slots for), plain Uint8Arrays, and batches that overlap in time
 * (one of them then runs here). The last test runs a real process, as a module
 * (whose flag the helper inherits): there the first batch must not wait for the
 * helper to start, later ones must use it, and, idle, it must not keep the process
 * alive.
 */
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import path from 'node:path';
import { crc32 } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { checksumBlocks, helperJobs, whenHelperReady, type BlockChecksums } from '../../lib/chain/block-checksums.js';

const sha = (b: Uint8Array): Buffer => createHash('sha256').update(b).digest();

function batch(sizes: readonly (number | null)[]): (Uint8Array | null)[] {
  return sizes.map((n) => (n === null ? null : randomBytes(n)));
}

function expectSums(blocks: readonly (Uint8Array | null)[], got: BlockChecksums, withSha: boolean, withCrc = true): void {
  expect(got.crcs).toHaveLength(blocks.length);
  expect(got.hashes).toHaveLength(blocks.length);
  blocks.forEach((b, i) => {
    if (b === null) {
      expect(got.crcs[i]).toBe(0);
      expect(got.hashes[i]).toBeUndefined();
      return;
    }
    expect(got.crcs[i]).toBe(withCrc ? crc32(b) : 0);
    if (withSha) expect(got.hashes[i]!.equals(sha(b))).toBe(true);
    else expect(got.hashes[i]).toBeUndefined();
  });
}

async function check(blocks: (Uint8Array | null)[]): Promise<void> {
  expectSums(blocks, await checksumBlocks(blocks, { crc32: true, sha256: true }), true);
  expectSums(blocks, await checksumBlocks(blocks, { crc32: true, sha256: false }), false);
  expectSums(blocks, await checksumBlocks(blocks, { crc32: false, sha256: true }), true, false);
}

describe('checksumBlocks', () => {
  it('small batches (on this thread) and large ones (split with the helper) alike, with and without SHA-256', async () => {
    expect(await whenHelperReady()).toBe(true);
    const jobs = helperJobs();
    await check([]);
    await check(batch([4096]));
    await check(batch([65536, null, 65536, 65536, null, 65536, 65536, 65536, 65536]));
    await check(batch(Array.from({ length: 64 }, () => 65536)));
    await check(batch(Array.from({ length: 300 }, () => 4096)));
    // The helper took part: in the two batches of each large set that ask for SHA-256.
    expect(helperJobs() - jobs).toBe(6);
  });

  it('a batch of CRC-32s alone is never split (the copy to the helper costs as much as the CRC)', async () => {
    expect(await whenHelperReady()).toBe(true);
    const jobs = helperJobs();
    const blocks = batch(Array.from({ length: 64 }, () => 65536));
    expectSums(blocks, await checksumBlocks(blocks, { crc32: true, sha256: false }), false);
    expect(helperJobs()).toBe(jobs);
  });

  it('batches larger than the shared area: the helper takes what fits, this thread the rest', async () => {
    expect(await whenHelperReady()).toBe(true);
    const jobs = helperJobs();
    await check(batch(Array.from({ length: 40 }, () => 1024 * 1024)));
    expect(helperJobs() - jobs).toBe(2); // the two calls that ask for SHA-256
  });

  it('more tiny blocks than the shared area has slots for', async () => {
    expect(await whenHelperReady()).toBe(true);
    const jobs = helperJobs();
    await check(batch(Array.from({ length: 20_000 }, () => 64)));
    expect(helperJobs() - jobs).toBe(2); // it was given only what it has room for
  });

  it('plain Uint8Arrays and views into larger buffers', async () => {
    const big = randomBytes(20 * 65536 + 17);
    const blocks: Uint8Array[] = [];
    for (let i = 0; i < 20; i++) blocks.push(new Uint8Array(big.buffer, big.byteOffset + 17 + i * 65536, 65536));
    await check(blocks);
  });

  it('overlapping batches are all right (one finding the helper busy runs here)', async () => {
    expect(await whenHelperReady()).toBe(true);
    const jobs = helperJobs();
    const batches = Array.from({ length: 6 }, () => batch(Array.from({ length: 32 }, () => 65536)));
    const results = await Promise.all(batches.map((b, k) => checksumBlocks(b, { crc32: true, sha256: k % 2 === 0 })));
    results.forEach((r, k) => expectSums(batches[k]!, r, k % 2 === 0));
    // The first batch asking for SHA-256 took the helper; the others started while it was busy.
    expect(helperJobs() - jobs).toBe(1);
  });

  it('in a new process the first batch does not wait for the helper, later ones use it, and idle it does not keep the process alive', () => {
    const module = path.resolve(import.meta.dirname, '../../dist/lib/chain/block-checksums.js');
    const script = `
      const { checksumBlocks, helperJobs, helperRunning, whenHelperReady } = await import(${JSON.stringify(module)});
      const { randomBytes } = await import('node:crypto');
      const blocks = () => Array.from({ length: 16 }, () => randomBytes(65536));
      const first = await checksumBlocks(blocks(), { crc32: true, sha256: true });
      const before = [helperRunning(), helperJobs()];
      const ready = await whenHelperReady();
      const second = await checksumBlocks(blocks(), { crc32: true, sha256: true });
      const ok = [first, second].every((o) => o.hashes.filter((h) => h && h.length === 32).length === 16);
      console.log(ok, before.join(' '), ready, helperJobs());
    `;
    const started = Date.now();
    const stdout = execFileSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 20_000 });
    expect(stdout.trim()).toBe('true true 0 true 1');
    expect(Date.now() - started).toBeLessThan(15_000);
  });
});
