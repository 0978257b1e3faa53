/**
 * Steps of chain workloads: each runs one Disk operation and applies the same
 * operation to the ChainModel. Plus a seeded generator of valid random sequences,
 * shared by the crash explorer and the SIGKILL child (which must regenerate exactly
 * the parent's sequence from the seed).
 */
import { Disk, type OpenDiskOptions } from '../../lib/chain/disk.js';
import type { ChainModel } from './chain-model.js';
import { Rng } from './rng.js';
import type { Step } from './workload.js';

/** The system under test: a disk that steps may close and reopen. */
export interface ChainSys {
  disk: Disk;
  readonly path: string;
  readonly options: OpenDiskOptions;
}

export type ChainStep = Step<ChainSys, ChainModel>;

export const steps = {
  write(offset: number, data: Uint8Array, tag = ''): ChainStep {
    return {
      label: `write(${offset}, ${data.length}B${tag})`,
      run: (s) => s.disk.write(offset, data),
      apply: (m) => m.write(offset, data),
    };
  },
  zero(offset: number, length: number): ChainStep {
    return {
      label: `zero(${offset}, ${length})`,
      run: (s) => s.disk.writeZeroes(offset, length),
      apply: (m) => m.zero(offset, length),
    };
  },
  flush(): ChainStep {
    return { label: 'flush', run: (s) => s.disk.flush(), apply: (m) => m.flush() };
  },
  snapshot(name: string): ChainStep {
    return {
      label: `snapshot(${name})`,
      run: async (s) => {
        await s.disk.snapshot(name);
      },
      apply: (m) => m.snapshot(name),
    };
  },
  revert(name: string, keepCurrentAs?: string): ChainStep {
    return {
      label: `revert(${name}${keepCurrentAs === undefined ? '' : `, keep as ${keepCurrentAs}`})`,
      run: (s) => s.disk.revert(name, keepCurrentAs === undefined ? {} : { keepCurrentAs }),
      apply: (m) => m.revert(name, keepCurrentAs),
      ...(keepCurrentAs === undefined ? {} : { intermediate: (m: ChainModel) => m.snapshot(keepCurrentAs) }),
    };
  },
  deleteSnapshot(name: string): ChainStep {
    return { label: `deleteSnapshot(${name})`, run: (s) => s.disk.deleteSnapshot(name), apply: (m) => m.deleteSnapshot(name) };
  },
  consolidate(): ChainStep {
    return {
      label: 'consolidate',
      run: async (s) => {
        await s.disk.consolidate();
      },
      apply: () => undefined,
    };
  },
  /** Close and open again; closing makes every write durable. */
  reopen(): ChainStep {
    return {
      label: 'reopen',
      run: async (s) => {
        await s.disk.close();
        s.disk = await Disk.open(s.path, s.options);
      },
      apply: (m) => m.flush(),
    };
  },
};

export interface RandomStepsOptions {
  readonly virtualSize: number;
  readonly blockSize: number;
  readonly count: number;
  /** Include reopen steps (default true). */
  readonly reopen?: boolean;
}

/**
 * A valid random sequence: writes (random, repeated and zero content, partial and
 * multi-block), zeroing, flushes, snapshots, reverts (some keeping the current
 * state), deletes and consolidations. Deterministic in `rng`.
 */
export function randomChainSteps(rng: Rng, o: RandomStepsOptions): ChainStep[] {
  const bs = o.blockSize;
  const size = o.virtualSize;
  const blocks = Math.ceil(size / bs);
  const names: string[] = [];
  let next = 0;
  const out: ChainStep[] = [];
  const range = (): [number, number] => {
    const aligned = rng.bool(0.6);
    const off = aligned ? rng.int(0, blocks - 1) * bs : rng.int(0, size - 1);
    const len = Math.min(size - off, rng.bool(0.5) ? bs * rng.int(1, 3) : rng.int(1, 3 * bs));
    return [off, Math.max(1, len)];
  };
  // A small pool of block contents makes dedup references likely.
  const pool = Array.from({ length: 4 }, () => rng.bytes(bs));
  while (out.length < o.count) {
    const r = rng.next();
    if (r < 0.4) {
      const [off, len] = range();
      let data: Uint8Array;
      const kind = rng.int(0, 2);
      if (kind === 0) data = rng.bytes(len);
      else if (kind === 1) data = new Uint8Array(len).fill(rng.int(1, 255));
      else {
        data = new Uint8Array(len);
        for (let i = 0; i < len; i += bs) data.set(rng.pick(pool).subarray(0, Math.min(bs, len - i)), i);
      }
      out.push(steps.write(off, data, ` #${out.length}`));
    } else if (r < 0.47) {
      const [off, len] = range();
      out.push(steps.zero(off, len));
    } else if (r < 0.62) {
      out.push(steps.flush());
    } else if (r < 0.75) {
      const name = `s${next++}`;
      names.push(name);
      out.push(steps.snapshot(name));
    } else if (r < 0.83 && names.length > 0) {
      const target = rng.pick(names);
      if (rng.bool(0.3)) {
        const keep = `s${next++}`;
        names.push(keep);
        out.push(steps.revert(target, keep));
      } else {
        out.push(steps.revert(target));
      }
    } else if (r < 0.92 && names.length > 0) {
      const i = rng.int(0, names.length - 1);
      out.push(steps.deleteSnapshot(names[i]!));
      names.splice(i, 1);
    } else if (r < 0.96) {
      out.push(steps.consolidate());
    } else if (o.reopen ?? true) {
      out.push(steps.reopen());
    }
  }
  return out;
}
