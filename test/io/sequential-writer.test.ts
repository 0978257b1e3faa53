/**
 * SequentialWriter against a model: random runs of data with gaps (within a page,
 * of whole pages, none), pieces crossing its 4 MiB staging buffers and a final size
 * past the data; the file must read exactly as the model,
 * zeros in the gaps. Run on the real file system and on the in-memory one (which
 * refuses misaligned direct transfers with EINVAL, as Linux does), with direct
 * writes granted, refused from the start, or refused after a few.
 */
import fs from 'node:fs';
import path from 'node:path';
import fc from 'fast-check';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DIRECT_ALIGN } from '../../lib/io/aligned-buffer.js';
import type { FileSystem } from '../../lib/io/file-system.js';
import { MemoryFileSystem } from '../../lib/io/memory-file-system.js';
import { nodeFileSystem } from '../../lib/io/node-file-system.js';
import { MIN_DIRECT_FILE_BYTES, SequentialWriter } from '../../lib/io/sequential-writer.js';
import { DirectProbeFS } from '../helpers/direct-fs.js';
import { propertyRuns, tempDir } from '../helpers/temp-dir.js';

let dir: string;
let cleanup: () => void;
beforeEach(() => ({ dir, cleanup } = tempDir('deltadisk-seqwriter-')));
afterEach(() => cleanup());

const MiB = 1024 * 1024;

interface Piece {
  readonly gap: number;
  readonly length: number;
}

const gap = fc.oneof(fc.constant(0), fc.integer({ min: 1, max: DIRECT_ALIGN - 1 }), fc.integer({ min: 1, max: 3 }).map((n) => n * DIRECT_ALIGN), fc.integer({ min: DIRECT_ALIGN, max: 200_000 }));
const length = fc.oneof({ weight: 6, arbitrary: fc.integer({ min: 1, max: 70_000 }) }, { weight: 1, arbitrary: fc.integer({ min: 1, max: 5 * MiB }) });
const piece: fc.Arbitrary<Piece> = fc.record({ gap, length });
interface Plan {
  readonly pieces: readonly Piece[];
  /** Bytes of hole after the last piece. */
  readonly tail: number;
  /** Make the file at least MIN_DIRECT_FILE_BYTES long. */
  readonly big: boolean;
}

const plan: fc.Arbitrary<Plan> = fc.record({
  pieces: fc.array(piece, { maxLength: 12 }),
  tail: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 3 * DIRECT_ALIGN })),
  big: fc.boolean(),
});

async function readFile(f: FileSystem, p: string, size: number): Promise<Buffer> {
  const h = await f.open(p, 'read');
  try {
    const b = Buffer.alloc(size + 1);
    let n = 0;
    while (n < b.length) {
      const r = await h.read(b, n, b.length - n, n);
      if (r === 0) break;
      n += r;
    }
    return b.subarray(0, n);
  } finally {
    await h.close();
  }
}

async function runPlan(f: FileSystem, p: string, { pieces, tail, big }: Plan): Promise<{ direct: boolean }> {
  let end = 0;
  const placed: { offset: number; data: Buffer }[] = [];
  for (const [i, pc] of pieces.entries()) {
    const data = Buffer.alloc(pc.length);
    for (let k = 0; k < data.length; k += 97) data[k] = (i * 13 + k) & 0xff || 1;
    placed.push({ offset: end + pc.gap, data });
    end += pc.gap + pc.length;
  }
  // Small files go through the page cache: half the runs are large enough not to.
  const size = Math.max(end + tail, big ? MIN_DIRECT_FILE_BYTES + tail : 0);
  const model = Buffer.alloc(size);
  for (const { offset, data } of placed) data.copy(model, offset);
  const w = await SequentialWriter.create(f, p, size);
  for (const { offset, data } of placed) await w.write(data, offset);
  await w.finish(size);
  const direct = w.direct;
  await w.close();
  const got = await readFile(f, p, size);
  expect(got.length).toBe(size);
  const diff = got.findIndex((b, k) => b !== model[k]);
  expect(diff).toBe(-1);
  return { direct };
}

describe('SequentialWriter', () => {
  it('writes what the model holds, directly on the real and the in-memory file system', async () => {
    const mem = new MemoryFileSystem();
    await mem.mkdirp('/m');
    let n = 0;
    await fc.assert(
      fc.asyncProperty(plan, async (pl) => {
        for (const [probe, p] of [
          [new DirectProbeFS(nodeFileSystem), path.join(dir, `f${n}`)],
          [new DirectProbeFS(mem), `/m/f${n}`],
        ] as const) {
          const { direct } = await runPlan(probe, p, pl);
          const large = pl.big || pl.pieces.reduce((s, x) => s + x.gap + x.length, 0) + pl.tail >= MIN_DIRECT_FILE_BYTES;
          expect(direct).toBe(large);
          if (!large) expect(probe.directBytes).toBe(0);
          if (large && pl.pieces.length > 0) expect(probe.directBytes).toBeGreaterThan(0);
          await probe.unlink(p);
        }
        n++;
      }),
      { numRuns: propertyRuns(40) },
    );
  });

  it('carries on through the page cache when direct writes are refused, at once or later', async () => {
    const mem = new MemoryFileSystem();
    await mem.mkdirp('/m');
    let n = 0;
    await fc.assert(
      fc.asyncProperty(plan, fc.integer({ min: 0, max: 3 }), async (pl, allowed) => {
        for (const [probe, p] of [
          [new DirectProbeFS(nodeFileSystem, allowed), path.join(dir, `r${n}`)],
          [new DirectProbeFS(mem, allowed), `/m/r${n}`],
        ] as const) {
          await runPlan(probe, p, { ...pl, big: true });
          // One ordinary handle at most, however many refused writes were in flight.
          expect(probe.readWriteOpens).toBeLessThanOrEqual(1);
          await probe.unlink(p);
        }
        n++;
      }),
      { numRuns: propertyRuns(30) },
    );
  });

  it('leaves holes of a page or more unwritten', async () => {
    const p = path.join(dir, 'sparse');
    const w = await SequentialWriter.create(nodeFileSystem, p, 64 * MiB);
    expect(w.direct).toBe(true);
    const data = Buffer.alloc(MiB, 7);
    await w.write(data, 0);
    await w.write(data, 63 * MiB);
    await w.finish(64 * MiB);
    await w.close();
    const st = fs.statSync(p);
    expect(st.size).toBe(64 * MiB);
    expect(st.blocks * 512).toBeLessThan(8 * MiB);
  });

  it('syncs behind itself through the page cache, and only there', async () => {
    const size = 200 * MiB;
    const piece = Buffer.alloc(4 * MiB, 3);
    const syncsFor = async (grantDirect: boolean): Promise<{ syncs: number; direct: boolean }> => {
      const mem = new MemoryFileSystem();
      const probe = new DirectProbeFS(mem, Infinity, grantDirect);
      const w = await SequentialWriter.create(probe, '/f', size);
      for (let off = 0; off < size; off += piece.length) await w.write(piece, off);
      await w.finish(size);
      await w.close();
      expect((await mem.stat('/f')).size).toBe(size);
      return { syncs: probe.datasyncs, direct: w.direct };
    };
    // Through the page cache: a sync started every 64 MiB (none waited for, so one
    // may still be running when the next is due), then finish's own.
    const plain = await syncsFor(false);
    expect(plain.direct).toBe(false);
    expect(plain.syncs).toBeGreaterThanOrEqual(2);
    expect(plain.syncs).toBeLessThanOrEqual(1 + Math.floor(size / (64 * MiB)));
    // Directly: finish's sync only.
    const direct = await syncsFor(true);
    expect(direct.direct).toBe(true);
    expect(direct.syncs).toBe(1);
  });

  it('reports a failed sync-behind from finish', async () => {
    const mem = new MemoryFileSystem();
    const probe = new DirectProbeFS(mem, Infinity, false);
    const inner = probe.open.bind(probe);
    // The first sync (the one behind) fails, later ones (finish's) succeed.
    let syncs = 0;
    probe.open = async (p, mode, options) => {
      const h = await inner(p, mode, options);
      return { ...h, datasync: () => (syncs++ === 0 ? Promise.reject(Object.assign(new Error('EIO: sync failed'), { code: 'EIO' })) : h.datasync()) };
    };
    const w = await SequentialWriter.create(probe, '/f', 80 * MiB);
    const piece = Buffer.alloc(4 * MiB, 5);
    for (let off = 0; off < 80 * MiB; off += piece.length) await w.write(piece, off);
    await expect(w.finish(80 * MiB)).rejects.toThrow(/EIO/);
    expect(syncs).toBe(1);
    await w.close();
  });

  it('refuses a write before the end of the last one', async () => {
    const w = await SequentialWriter.create(nodeFileSystem, path.join(dir, 'back'), 10);
    await w.write(Buffer.alloc(10), 100);
    await expect(w.write(Buffer.alloc(1), 105)).rejects.toThrow(/before the end/);
    await w.close();
  });
});
