/**
 * Chain backups against a model: random writes (runs of every length, so the reader
 * reads and reuses buffers of many sizes), zeroed ranges and backups, each
 * incremental on the last; every backup must restore to the disk's bytes at its
 * capture, and read no more than the chunks written since the backup before.
 *
 * Size: DELTADISK_PROPERTY_RUNS sequences (default 8); FC_SEED replays.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { backup, Disk, Repository, restore } from '../../lib/index.js';
import { withRepo } from '../helpers/repo.js';
import { propertyRuns, tempDir } from '../helpers/temp-dir.js';

const KiB = 1024;
const CHUNK = 64 * KiB; // chunks of a 4 KiB-block chain
const SIZE = 96 * CHUNK;
const t = tempDir('deltadisk-chainmodel-');
afterAll(t.cleanup);

type Op =
  | { kind: 'write'; at: number; length: number; seed: number }
  | { kind: 'zero'; at: number; length: number }
  | { kind: 'scatter'; chunks: number[]; seed: number }
  | { kind: 'backup' };

const op: fc.Arbitrary<Op> = fc.oneof(
  { weight: 5, arbitrary: fc.record({ kind: fc.constant('write' as const), at: fc.nat(SIZE - 1), length: fc.integer({ min: 1, max: 40 * CHUNK }), seed: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('zero' as const), at: fc.nat(SIZE - 1), length: fc.integer({ min: 1, max: 8 * CHUNK }) }) },
  // One block in each of many chunks: more single-chunk runs than reads in flight.
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('scatter' as const), chunks: fc.uniqueArray(fc.nat(SIZE / CHUNK - 1), { minLength: 1, maxLength: 48 }), seed: fc.nat() }) },
  { weight: 2, arbitrary: fc.constant({ kind: 'backup' as const }) },
);

function bytes(seed: number, n: number): Buffer {
  const out = Buffer.alloc(n);
  for (let at = 0, k = 0; at < n; at += 32, k++) createHash('sha256').update(`${seed}:${k}`).digest().copy(out, at);
  return out;
}

let run = 0;

describe('chain backups against a model', () => {
  it('every backup restores to the disk at its capture and reads only what changed since the last', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(op, { minLength: 1, maxLength: 14 }), async (ops) => {
        const root = path.join(t.dir, `r${run++}`);
        fs.mkdirSync(path.join(root, 'vm'), { recursive: true });
        const repoDir = path.join(root, 'repo');
        await Repository.init(repoDir, { packSize: 1024 * KiB });
        const diskPath = path.join(root, 'vm', 'disk.chain');
        const model = Buffer.alloc(SIZE);
        const backups: { id: string; image: Buffer }[] = [];
        let touched = new Set<number>(); // chunks written since the last backup
        try {
          const d = await Disk.create(diskPath, { size: SIZE, blockSize: 4 * KiB });
          await d.close();
          for (const o of ops) {
            if (o.kind === 'backup') {
              const r = await withRepo(repoDir, 'shared', (repo) => backup(repo, [diskPath]));
              if (backups.length > 0) expect(r.summary.bytesRead).toBeLessThanOrEqual(touched.size * CHUNK);
              backups.push({ id: r.id, image: Buffer.from(model) });
              touched = new Set();
              continue;
            }
            const disk = await Disk.open(diskPath);
            if (o.kind === 'scatter') {
              try {
                for (const c of o.chunks) {
                  const at = c * CHUNK + (o.seed % 16) * 4 * KiB;
                  const data = bytes(o.seed + c, 4 * KiB);
                  await disk.write(at, data);
                  data.copy(model, at);
                  touched.add(c);
                }
              } finally {
                await disk.close();
              }
              continue;
            }
            const length = Math.min(o.length, SIZE - o.at);
            try {
              if (o.kind === 'write') {
                const data = bytes(o.seed, length);
                await disk.write(o.at, data);
                data.copy(model, o.at);
              } else {
                await disk.writeZeroes(o.at, length);
                model.fill(0, o.at, o.at + length);
              }
            } finally {
              await disk.close();
            }
            for (let c = Math.floor(o.at / CHUNK); c <= Math.floor((o.at + length - 1) / CHUNK); c++) touched.add(c);
          }
          for (const b of backups) {
            const out = path.join(root, `out-${b.id}`);
            await withRepo(repoDir, false, (repo) => restore(repo, b.id, { target: out, verify: true }));
            const back = await Disk.open(path.join(out, 'disk.chain'), { readOnly: true });
            try {
              expect((await back.read(0, SIZE)).equals(b.image)).toBe(true);
            } finally {
              await back.close();
            }
          }
        } finally {
          fs.rmSync(root, { recursive: true, force: true });
        }
      }),
      { numRuns: propertyRuns(8) },
    );
  });
});
