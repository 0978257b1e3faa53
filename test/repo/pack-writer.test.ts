/**
 * PackWriter with producers at once (the disks of a VM are read together): whatever
 * the interleaving of adds and flushes, an index file is written only once every
 * pack it names is committed under its name, and every blob added before a flush
 * returned is named by an index file by then.
 */
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import fc from 'fast-check';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { Repository } from '../../lib/repo/repository.js';
import { decodeIndexFile } from '../../lib/format/index-file.js';
import type { StorageBackend } from '../../lib/repo/backend.js';
import { PackWriter } from '../../lib/repo/pack-writer.js';
import { ChunkIndex } from '../../lib/repo/chunk-index.js';
import { propertyRuns, tempDir } from '../helpers/temp-dir.js';
import { DirectProbeFS } from '../helpers/direct-fs.js';
import { FaultFS } from '../harness/fault-fs.js';
import { nodeFileSystem } from '../../lib/io/node-file-system.js';

const { dir, cleanup } = tempDir('deltadisk-pack-writer-');
afterAll(cleanup);

/** The real backend, checking at each index write that the packs it names are committed. */
function checking(real: StorageBackend, violations: string[]): StorageBackend {
  return new Proxy(real, {
    get(target, prop, receiver) {
      if (prop === 'write') {
        return async (kind: Parameters<StorageBackend['write']>[0], name: string, data: readonly Uint8Array[], mode: 'create' | 'replace') => {
          if (kind === 'index') {
            const committed = new Set((await target.list('pack')).map((f) => f.name));
            for (const p of decodeIndexFile(Buffer.concat(data))) if (!committed.has(p.name)) violations.push(p.name);
          }
          return target.write(kind, name, data, mode);
        };
      }
      const v = Reflect.get(target, prop, receiver) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
}

const sha = (b: Buffer): Buffer => createHash('sha256').update(b).digest();

describe('PackWriter writing a pack ahead while it fills', () => {
  const MiB = 1024 * 1024;
  const blobs = Array.from({ length: 5 }, () => randomBytes(200 * 1024));

  it('writes its filled pages before the pack is sealed, past the page cache; the pack reads back', async () => {
    const at = path.join(dir, 'ahead');
    await Repository.init(at, { packSize: MiB });
    const probe = new DirectProbeFS(nodeFileSystem);
    const repo = await Repository.open(at, { lock: 'shared', purpose: 'test', fs: probe });
    try {
      const writer = new PackWriter(repo.backend, new ChunkIndex(), { packSize: MiB, compress: false });
      for (const b of blobs.slice(0, 3)) await writer.add(sha(b), b);
      // 600 KiB added: the first 400 KiB written already (a piece holds a quarter pack at least).
      await vi.waitFor(() => expect(probe.directBytes).toBe(400 * 1024), { timeout: 10_000 });
      expect(fs.readdirSync(path.join(at, 'packs', '00')).filter((n) => n.startsWith('growing.tmp-'))).toHaveLength(1);
      for (const b of blobs.slice(3)) await writer.add(sha(b), b);
      await writer.flush();
      expect(fs.readdirSync(path.join(at, 'packs', '00')).filter((n) => n.includes('.tmp-'))).toEqual([]);
      expect(probe.plainBytes).toBeLessThan(8192 + 4096);
      const index = await repo.loadIndex();
      for (const b of blobs) expect((await repo.readBlob(index, index.findUsable(sha(b)))).equals(b)).toBe(true);
    } finally {
      await repo.close();
    }
  });

  for (const op of ['write', 'create'] as const) {
    it(`fails the flush when a piece's file cannot be ${op === 'write' ? 'written' : 'created'}, and leaves no file behind`, async () => {
      const at = path.join(dir, `ahead-fails-${op}`);
      await Repository.init(at, { packSize: MiB });
      const faults = new FaultFS(nodeFileSystem).fail({ op, path: (p) => p.includes('growing.tmp-'), code: 'EIO' });
      const repo = await Repository.open(at, { lock: 'shared', purpose: 'test', fs: faults });
      try {
        const writer = new PackWriter(repo.backend, new ChunkIndex(), { packSize: MiB, compress: false });
        for (const b of blobs.slice(0, 3)) await writer.add(sha(b), b);
        await expect(writer.flush()).rejects.toMatchObject({ code: 'IO_ERROR' });
        await writer.abort();
        expect(fs.readdirSync(path.join(at, 'packs', '00'))).toEqual([]);
        expect(await repo.backend.list('pack')).toEqual([]);
      } finally {
        await repo.close();
      }
    });
  }

  it('leaves no file behind when aborted while the pack fills, pieces written or failing', async () => {
    for (const failing of [false, true]) {
      const at = path.join(dir, `ahead-abort-${failing}`);
      await Repository.init(at, { packSize: MiB });
      const faults = new FaultFS(nodeFileSystem);
      if (failing) faults.fail({ op: 'write', path: (p) => p.includes('growing.tmp-'), code: 'ENOSPC' });
      const repo = await Repository.open(at, { lock: 'shared', purpose: 'test', fs: faults });
      try {
        const writer = new PackWriter(repo.backend, new ChunkIndex(), { packSize: MiB, compress: false });
        for (const b of blobs.slice(0, 3)) await writer.add(sha(b), b);
        await writer.abort(); // no flush: the pack is still open, its pieces written (or refused)
        expect(fs.readdirSync(path.join(at, 'packs', '00')), `failing ${failing}`).toEqual([]);
      } finally {
        await repo.close();
      }
    }
  });
});

describe('PackWriter committing packs', () => {
  const MiB = 1024 * 1024;
  /** Every file under the repository's packs directory (temporary ones too). */
  const packFiles = (at: string): string[] => fs.readdirSync(path.join(at, 'packs'), { recursive: true, withFileTypes: true }).filter((e) => e.isFile()).map((e) => e.name);

  it('commits no pack before the flush, every pack at it; an abort leaves none', async () => {
    for (const flush of [true, false]) {
      const at = path.join(dir, `commit-${flush}`);
      await Repository.init(at, { packSize: MiB });
      const repo = await Repository.open(at, { lock: 'shared', purpose: 'test' });
      const commits: number[] = [];
      const backend = new Proxy(repo.backend, {
        get(target, prop, receiver) {
          if (prop === 'commit') return (files: readonly unknown[]) => (commits.push(files.length), target.commit(files as Parameters<StorageBackend['commit']>[0]));
          const v = Reflect.get(target, prop, receiver) as unknown;
          return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
        },
      });
      try {
        const writer = new PackWriter(backend, new ChunkIndex(), { packSize: MiB, compress: false });
        // 40 blobs of 300 KiB: ten packs sealed, staged, none committed.
        for (let i = 0; i < 40; i++) {
          const b = randomBytes(300 * 1024);
          await writer.add(sha(b), b);
        }
        expect(commits).toEqual([]);
        expect(await repo.backend.list('pack')).toEqual([]);
        if (flush) {
          await writer.flush();
          expect(commits).toEqual([writer.stats.packs]);
          expect((await repo.backend.list('pack')).length).toBe(writer.stats.packs);
          expect(packFiles(at)).toHaveLength(writer.stats.packs);
        } else {
          await writer.abort();
          expect(commits).toEqual([]);
          expect(packFiles(at)).toEqual([]);
        }
      } finally {
        await repo.close();
      }
    }
  });
});

describe('PackWriter', () => {
  it('adds from several producers at once, with flushes among them, never index a pack before it is committed', async () => {
    let run = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(fc.array(fc.oneof(fc.integer({ min: 1, max: 40_000 }), fc.constant(0)), { minLength: 1, maxLength: 25 }), { minLength: 2, maxLength: 4 }), async (producers) => {
        const at = path.join(dir, `r${run++}`);
        await Repository.init(at);
        const repo = await Repository.open(at, { lock: 'shared', purpose: 'test' });
        try {
          const violations: string[] = [];
          // 256 KiB packs: pieces of 64 KiB are written ahead while they fill, and packs seal.
          const writer = new PackWriter(checking(repo.backend, violations), new ChunkIndex(), { packSize: 256 * 1024, compress: false });
          const flushedBlobs: Buffer[][] = [];
          // Each producer adds its blobs in turn; 0 stands for a flush.
          await Promise.all(
            producers.map(async (ops) => {
              const added: Buffer[] = [];
              for (const op of ops) {
                if (op === 0) {
                  await writer.flush();
                  flushedBlobs.push([...added]);
                  continue;
                }
                const data = randomBytes(op);
                const h = sha(data);
                await writer.add(h, data);
                added.push(h);
              }
            }),
          );
          await writer.flush();
          expect(violations).toEqual([]);
          // Every blob is in a pack an index file names, and reads back.
          const named = new Set<string>();
          for (const f of await repo.backend.list('index')) for (const p of decodeIndexFile(await repo.backend.read('index', f.name, 1 << 24))) named.add(p.name);
          const index = await repo.loadIndex();
          for (const list of flushedBlobs) for (const h of list) expect(index.findUsable(h)).toBeGreaterThanOrEqual(0);
          expect(named.size).toBe((await repo.backend.list('pack')).length);
        } finally {
          await repo.close();
          fs.rmSync(at, { recursive: true, force: true });
        }
      }),
      { numRuns: propertyRuns(15) },
    );
  });
});
