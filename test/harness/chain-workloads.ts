/**
 * The chain's workloads for the crash, fault and SIGKILL harnesses.
 *
 * Each is short (a handful of operations, so every crash point can be enumerated)
 * and aimed at one mechanism: appends and flushes, snapshot creation, revert,
 * deleting a snapshot with a merge in each direction (sizes crafted so the cost
 * rule picks stream or commit, and dedup references crafted so content must be
 * carried over as BLOB records), and dedup writes. `expectFiles` states which delta
 * files the operations must have removed and kept, so a workload that stops
 * exercising what it is named after fails loudly instead of testing less.
 */
import path from 'node:path';
import { Disk } from '../../lib/chain/disk.js';
import { ChainModel } from './chain-model.js';
import { chainAfterFailure, verifyChain } from './chain-checker.js';
import { randomChainSteps, steps, type ChainStep, type ChainSys } from './chain-steps.js';
import { Rng } from './rng.js';
import type { Workload, WorkloadEnv } from './workload.js';

export const DESCRIPTOR = 'disk.chain';
const BS = 4096;
/** 16 blocks and a partial 17th. */
const SIZE = 16 * BS + 1000;

export interface ChainWorkloadSpec {
  readonly name: string;
  readonly virtualSize?: number;
  readonly blockSize?: number;
  readonly dedup?: boolean;
  /** Content of a raw base image (none: a sparse base). */
  readonly base?: Uint8Array;
  /** Run after creating the disk, then flushed; part of the durable starting state. */
  readonly setup: readonly ChainStep[];
  /** Close and reopen after setup, so the starting layers are fully indexed. */
  readonly reopenAfterSetup?: boolean;
  readonly steps: readonly ChainStep[];
  /** Delta files the steps must remove and keep (checked on a clean run). */
  readonly expectFiles?: { readonly gone: readonly string[]; readonly kept: readonly string[] };
  /** The steps append to a layer directly (checked on a clean run). */
  readonly expectDirectAppend?: boolean;
}

export type ChainWorkload = Workload<ChainSys, ChainModel> & { readonly spec: ChainWorkloadSpec };

export function chainWorkload(spec: ChainWorkloadSpec): ChainWorkload {
  const bs = spec.blockSize ?? BS;
  const size = spec.base?.length ?? spec.virtualSize ?? SIZE;
  return {
    name: spec.name,
    spec,
    steps: spec.steps,
    async setup(env: WorkloadEnv): Promise<ChainSys> {
      const p = path.join(env.dir, DESCRIPTOR);
      const options = { fs: env.fs, lock: false };
      let basePath: string | undefined;
      if (spec.base !== undefined) {
        basePath = path.join(env.dir, 'base.raw');
        const h = await env.fs.open(basePath, 'createExclusive');
        await h.write([spec.base], 0);
        await h.datasync();
        await h.close();
        await env.fs.syncDir(env.dir);
      }
      const disk = await Disk.create(p, {
        ...options,
        blockSize: bs,
        ...(spec.dedup === undefined ? {} : { dedup: spec.dedup }),
        ...(basePath === undefined ? { size } : { base: basePath }),
      });
      const sys: ChainSys = { disk, path: p, options };
      for (const s of spec.setup) await s.run(sys);
      await sys.disk.flush();
      if (spec.reopenAfterSetup) {
        await sys.disk.close();
        sys.disk = await Disk.open(p, options);
      }
      return sys;
    },
    initialModel(): ChainModel {
      const m = new ChainModel(size, bs, spec.base);
      for (const s of spec.setup) s.apply(m);
      m.flush();
      return m;
    },
    async reopen(env: WorkloadEnv): Promise<ChainSys> {
      const p = path.join(env.dir, DESCRIPTOR);
      const options = { fs: env.fs, lock: false };
      return { disk: await Disk.open(p, options), path: p, options };
    },
    async release(sys: ChainSys): Promise<void> {
      await sys.disk.close().catch(() => undefined);
    },
    afterFailure: chainAfterFailure,
    verify: (env, history) => verifyChain(env, DESCRIPTOR, history),
  };
}

/** Deterministic block contents. */
function content(seed: number, blocks: number, bs = BS): Uint8Array {
  return new Rng(seed).bytes(blocks * bs);
}

function fill(v: number, length: number): Uint8Array {
  return new Uint8Array(length).fill(v);
}

const Q = content(7, 1); // content referenced across layers
const R = content(8, 1);

/** The fixed workloads, each aimed at one mechanism. */
export function chainWorkloads(): ChainWorkload[] {
  return [
    chainWorkload({
      name: 'writes and flushes',
      setup: [steps.write(0, content(1, 3))],
      steps: [
        steps.write(BS + 100, content(2, 2).subarray(0, 5000), ' partial'),
        steps.write(8 * BS, content(3, 2)),
        steps.flush(),
        steps.write(12 * BS, content(3, 2), ' dedup'),
        steps.zero(0, BS),
        steps.flush(),
      ],
    }),
    chainWorkload({
      name: 'snapshot create',
      setup: [steps.write(0, content(4, 2))],
      steps: [
        steps.write(3 * BS, content(5, 2)),
        steps.snapshot('a'),
        steps.write(3 * BS + 10, content(6, 1).subarray(0, 100), ' partial'),
        steps.snapshot('b'),
      ],
    }),
    chainWorkload({
      name: 'revert',
      setup: [steps.write(0, content(9, 2)), steps.snapshot('a'), steps.write(BS, content(10, 2))],
      steps: [steps.write(2 * BS, content(11, 2)), steps.revert('a'), steps.write(5 * BS, content(12, 1)), steps.flush()],
    }),
    chainWorkload({
      name: 'revert keeping the current state',
      setup: [steps.write(0, content(13, 2)), steps.snapshot('a'), steps.write(BS, content(14, 2))],
      steps: [steps.write(2 * BS, content(15, 1)), steps.revert('a', 'kept'), steps.write(6 * BS, content(16, 1)), steps.flush()],
    }),
    chainWorkload({
      // Layer 1 (s1) is small, its child (s2) large: deleting s1 streams layer 1 up
      // into layer 2. Q is garbage in layer 1 but referenced from layer 2: a BLOB.
      name: 'delete snapshot, stream merge',
      setup: [
        steps.write(2 * BS, content(17, 1)),
        steps.write(3 * BS, Q),
        steps.write(3 * BS, R),
        steps.snapshot('s1'),
        steps.write(6 * BS, content(18, 8)),
        steps.write(15 * BS, Q, ' ref'),
        steps.snapshot('s2'),
        steps.write(0, content(19, 1)),
      ],
      steps: [steps.deleteSnapshot('s1'), steps.write(BS, content(20, 1)), steps.flush()],
      expectFiles: { gone: ['disk-000001.delta'], kept: ['disk-000002.delta', 'disk-000003.delta'] },
    }),
    chainWorkload({
      // Layer 1 (s1) is large, its child layer 2 (s2) small: deleting s1 commits
      // layer 2 down into layer 1. Q is garbage in layer 2 but referenced from the
      // active layer 3: a BLOB.
      name: 'delete snapshot, commit merge',
      setup: [
        steps.write(0, content(21, 9)),
        steps.snapshot('s1'),
        steps.write(10 * BS, Q),
        steps.write(10 * BS, R),
        steps.write(11 * BS, content(22, 1)),
        steps.snapshot('s2'),
        steps.write(14 * BS, Q, ' ref'),
      ],
      steps: [steps.deleteSnapshot('s1'), steps.write(13 * BS, content(23, 1)), steps.flush()],
      expectFiles: { gone: ['disk-000002.delta'], kept: ['disk-000001.delta', 'disk-000003.delta'] },
    }),
    chainWorkload({
      // The only child of the large layer 1 is the active layer: the commit merge
      // makes layer 1 the active layer.
      name: 'delete snapshot, commit into the active path',
      setup: [steps.write(0, content(24, 10)), steps.snapshot('s1'), steps.write(12 * BS, content(25, 1))],
      reopenAfterSetup: true,
      steps: [steps.write(13 * BS, Q), steps.deleteSnapshot('s1'), steps.write(14 * BS, Q, ' ref'), steps.flush()],
      expectFiles: { gone: ['disk-000002.delta'], kept: ['disk-000001.delta'] },
    }),
    chainWorkload({
      name: 'dedup writes',
      setup: [steps.write(0, Q), steps.write(BS, R), steps.snapshot('a')],
      steps: [
        steps.write(4 * BS, new Uint8Array([...Q, ...R, ...Q]), ' refs to ancestor'),
        steps.write(8 * BS, new Uint8Array([...content(26, 1), ...content(26, 1)]), ' ref within the write'),
        steps.flush(),
        steps.write(12 * BS, fill(0, 2 * BS), ' zeros'),
        steps.snapshot('b'),
      ],
    }),
    chainWorkload({
      name: 'raw base, no dedup',
      base: content(27, 16),
      dedup: false,
      setup: [steps.write(BS, content(28, 1))],
      steps: [steps.write(2 * BS + 7, content(29, 1), ' partial over the base'), steps.snapshot('a'), steps.zero(4 * BS, 2 * BS), steps.flush()],
    }),
    chainWorkload({
      // Closing indexes the tail (segment, header); opening recovers.
      name: 'close and reopen',
      setup: [steps.write(0, content(36, 2)), steps.snapshot('a')],
      steps: [steps.write(2 * BS, content(37, 3)), steps.reopen(), steps.write(3 * BS + 5, content(38, 1), ' partial'), steps.reopen()],
    }),
    chainWorkload({
      // A merge copying 256 KiB (4 blocks of 64 KiB) appends it past the page cache,
      // through a second, direct handle (LayerFile.append's direct).
      name: 'delete with a merge written directly',
      virtualSize: 12 * 65536 + 1000,
      blockSize: 65536,
      setup: [steps.write(0, content(40, 4, 65536)), steps.snapshot('a'), steps.write(4 * 65536, content(41, 5, 65536)), steps.snapshot('b')],
      steps: [steps.write(5, content(42, 1).subarray(0, 100), ' partial'), steps.deleteSnapshot('a'), steps.flush()],
      expectDirectAppend: true,
    }),
    chainWorkload({
      // Deleting 'a' copies b's 3 blocks down into a's layer (fewer than the 5 it
      // would copy up), leaving 3 of its 11 blocks overwritten: over the 25 %
      // consolidate compacts at. Compaction appends the 8 blocks still in use (512
      // KiB) to the new file past the page cache.
      name: 'compaction written directly',
      virtualSize: 12 * 65536 + 1000,
      blockSize: 65536,
      setup: [steps.write(0, content(43, 8, 65536)), steps.snapshot('a'), steps.write(0, content(44, 3, 65536)), steps.snapshot('b'), steps.deleteSnapshot('a')],
      steps: [steps.write(9 * 65536 + 5, content(45, 1).subarray(0, 100), ' partial'), steps.consolidate(), steps.flush()],
      expectDirectAppend: true,
    }),
    chainWorkload({
      name: 'two deletes and a consolidation',
      setup: [
        steps.write(0, content(30, 2)),
        steps.snapshot('a'),
        steps.write(2 * BS, content(31, 2)),
        steps.snapshot('b'),
        steps.write(4 * BS, content(32, 2)),
        steps.snapshot('c'),
      ],
      steps: [steps.deleteSnapshot('b'), steps.deleteSnapshot('a'), steps.consolidate()],
    }),
  ];
}

/** A random workload (seeded): the same operations the SIGKILL child runs. */
export function randomChainWorkload(seed: number, count = 12): ChainWorkload {
  const rng = new Rng(seed);
  const setupRng = rng.fork();
  return chainWorkload({
    name: `random #${seed}`,
    setup: [steps.write(0, setupRng.bytes(4 * BS)), steps.snapshot('base')],
    steps: randomChainSteps(rng, { virtualSize: SIZE, blockSize: BS, count }),
  });
}

/**
 * Enough single-block writes (4,200 rows, overwriting 16 blocks again and again)
 * that a flush indexes the tail with a map segment and a new header mid-run, the
 * path small workloads never reach. Too long to enumerate: explore its end.
 */
export function manySmallWritesWorkload(): ChainWorkload {
  const rng = new Rng(4200);
  const writes: ChainStep[] = [];
  for (let i = 0; i < 4200; i++) writes.push(steps.write((i % 16) * BS, rng.bytes(BS), ` #${i}`));
  return chainWorkload({
    name: 'many small writes (a map segment mid-run)',
    setup: [steps.write(0, content(33, 4))],
    steps: [...writes, steps.flush(), steps.write(3 * BS, content(34, 1)), steps.snapshot('after'), steps.write(5 * BS, content(35, 1)), steps.flush()],
  });
}
