/**
 * Overwritten data does not pile up without end: a layer holding at least 256 MiB of
 * it, and more than live data, is compacted on its own. Two ways a layer gets there:
 *  - a backup's older anchor is deleted after every backup, and the merge copies what
 *    changed into the large layer below (the blocks it replaces stay there);
 *  - the active layer, overwritten in place, on flush.
 * Both are driven with real data through the Disk API; what the disk reads (and what
 * its snapshot reads) is compared with what was written, also after reopening.
 */
import { createCipheriv, createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Disk, type DiskReader } from '../../lib/index.js';
import { deltaFiles } from '../helpers/disk.js';
import { tempDir } from '../helpers/temp-dir.js';

const MiB = 1024 * 1024;
const PIECE = 16 * MiB;

let dir: string;
let cleanup: () => void;
let file: string;

beforeEach(() => {
  ({ dir, cleanup } = tempDir('deltadisk-autocompact-'));
  file = path.join(dir, 'disk.chain');
});
afterEach(() => cleanup());

/** `n` bytes of incompressible data determined by `seed` (AES-CTR: fast enough for hundreds of MiB). */
function data(seed: string, n: number): Buffer {
  const c = createCipheriv('aes-256-ctr', createHash('sha256').update(seed).digest(), Buffer.alloc(16));
  return Buffer.concat([c.update(Buffer.alloc(n)), c.final()]);
}

/** Writes `bytes` at 0 in 16 MiB pieces, each piece's data named by `seed` and its place. */
async function fill(d: Disk, bytes: number, seed: string, expected: Map<number, string>): Promise<void> {
  for (let at = 0; at < bytes; at += PIECE) {
    const piece = data(`${seed}:${at}`, PIECE);
    await d.write(at, piece);
    expected.set(at, createHash('sha256').update(piece).digest('hex'));
  }
}

async function readsAs(r: Disk | DiskReader, expected: ReadonlyMap<number, string>): Promise<void> {
  for (const [at, sum] of expected) expect(createHash('sha256').update(await r.read(at, PIECE)).digest('hex'), `piece at ${at / MiB} MiB`).toBe(sum);
}

const deltaBytes = (): number => deltaFiles(dir).reduce((n, f) => n + fs.statSync(path.join(dir, f)).size, 0);

describe('automatic compaction', () => {
  it.each(['snapshot', 'bookmark'] as const)("compacts the layer a backup's anchor deletions leave overwritten data in, once it holds more of it than live data (anchors taken as %s)", async (kind) => {
    const LIVE = 208 * MiB;
    const CHANGE = 96 * MiB; // under half the live data: copying it down is the cheaper merge
    const d = await Disk.create(file, { size: 256 * MiB });
    const expected = new Map<number, string>();
    await fill(d, LIVE, 'base', expected);
    // A snapshot anchor's deletion merges what changed into the large layer below; a
    // bookmark's merges nothing, the active layer having taken the overwrites.
    const anchor = (name: string) => (kind === 'snapshot' ? d.snapshot(name) : d.bookmark(name));
    await anchor('anchor-0');
    const sizes: number[] = [];
    for (let round = 1; round <= 3; round++) {
      await fill(d, CHANGE, `round ${round}`, expected);
      await anchor(`anchor-${round}`);
      await d.deleteSnapshot(`anchor-${round - 1}`);
      sizes.push(deltaBytes());
      await readsAs(d, expected);
    }
    // Rounds 1 and 2 left 96 and 192 MiB of replaced blocks in the large layer (the
    // files grew by each round's change); round 3 reached 288 MiB, more than the
    // 208 MiB live, and the layer was rewritten with the live data alone.
    expect(sizes[1]! - sizes[0]!).toBeGreaterThanOrEqual(CHANGE);
    expect(sizes[1]!).toBeGreaterThan(LIVE + 2 * CHANGE);
    expect(sizes[2]!).toBeLessThan(LIVE + 8 * MiB);
    expect(d.snapshots().map((s) => s.name)).toEqual(['anchor-3']);
    const snap = await d.openSnapshot('anchor-3');
    await readsAs(snap, expected);
    await snap.close();
    await d.close();
    const again = await Disk.open(file, { readOnly: true, verifyReads: true });
    await readsAs(again, expected);
    await again.close();
  }, 120_000);

  it('compacts the active layer on flush once most of it is overwritten data', async () => {
    const LIVE = 96 * MiB;
    const d = await Disk.create(file, { size: 128 * MiB });
    const expected = new Map<number, string>();
    for (let pass = 0; pass < 4; pass++) await fill(d, LIVE, `pass ${pass}`, expected);
    // 288 MiB overwritten of a 384 MiB log: flush compacts.
    await d.flush();
    expect(deltaBytes()).toBeLessThan(LIVE + 8 * MiB);
    await readsAs(d, expected);
    await d.close();
    const again = await Disk.open(file, { readOnly: true, verifyReads: true });
    await readsAs(again, expected);
    await again.close();
  }, 120_000);
});
