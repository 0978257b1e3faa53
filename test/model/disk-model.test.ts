/**
 * The model-based test of the chain: random operation sequences run against a real
 * disk (on real files, and on the in-memory file system) and the reference model,
 * comparing every read, reopening from the files inside the sequence.
 *
 * Size: DELTADISK_PROPERTY_RUNS sequences per case (default 40); FC_SEED replays.
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import fc from 'fast-check';
import { describe, it } from 'vitest';
import { Disk, MemoryFileSystem, type FileSystem } from '../../lib/index.js';
import { DiskModel, diskCommands, type RealDisk } from '../../lib/testing/index.js';
import { propertyRuns, tempDir } from '../helpers/temp-dir.js';

const BS = 4096;
const SIZE = 12 * BS + 1000; // a partial last block

interface Case {
  readonly name: string;
  readonly memory: boolean;
  readonly dedup: boolean;
  readonly base: boolean;
}

const cases: Case[] = [
  { name: 'real files, dedup, sparse base', memory: false, dedup: true, base: false },
  { name: 'real files, no dedup, raw base', memory: false, dedup: false, base: true },
  { name: 'memory, dedup, raw base', memory: true, dedup: true, base: true },
];

describe('disk against the model', () => {
  for (const c of cases) {
    it(c.name, async () => {
      const { dir, cleanup } = tempDir();
      let n = 0;
      try {
        await fc.assert(
          fc.asyncProperty(fc.commands(diskCommands({ virtualSize: SIZE, blockSize: BS, bookmarks: true }), { size: '+1', maxCommands: 50 }), async (cmds) => {
            const runDir = path.join(dir, `run${n++}`);
            let fsys: FileSystem | undefined;
            if (c.memory) {
              const mem = new MemoryFileSystem();
              await mem.mkdirp(runDir);
              fsys = mem;
            } else {
              fs.mkdirSync(runDir);
            }
            const options = fsys === undefined ? {} : { fs: fsys };
            let initial: Uint8Array | undefined;
            if (c.base) {
              initial = randomBytes(SIZE);
              const basePath = path.join(runDir, 'base.raw');
              if (fsys === undefined) fs.writeFileSync(basePath, initial);
              else {
                const h = await fsys.open(basePath, 'createExclusive');
                await h.write([initial], 0);
                await h.close();
              }
            }
            const descriptor = path.join(runDir, 'disk.chain');
            const disk = await Disk.create(descriptor, {
              ...options,
              blockSize: BS,
              dedup: c.dedup,
              ...(c.base ? { base: path.join(runDir, 'base.raw') } : { size: SIZE }),
            });
            const real: RealDisk = { disk, path: descriptor, options };
            try {
              await fc.asyncModelRun(() => ({ model: new DiskModel(SIZE, BS, initial), real }), cmds);
            } finally {
              await real.disk.close();
              if (!c.memory) fs.rmSync(runDir, { recursive: true, force: true });
            }
          }),
          { numRuns: propertyRuns(40) },
        );
      } finally {
        cleanup();
      }
    });
  }
});
