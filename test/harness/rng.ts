/**
 * A small seeded random number generator (mulberry32) for the harness.
 *
 * Every random choice the harness makes (crash points, kept/dropped/torn writes,
 * garbage bytes, fault points, workload data) comes from one of these, so a failure
 * printed with its seed replays exactly.
 */
export class Rng {
  #state: number;
  readonly seed: number;

  constructor(seed: number) {
    this.seed = seed >>> 0;
    this.#state = this.seed;
  }

  /** A float in [0, 1). */
  next(): number {
    let t = (this.#state = (this.#state + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** An integer in [min, max]. */
  int(min: number, max: number): number {
    return min + Math.floor(this.next() * (max - min + 1));
  }

  bool(p = 0.5): boolean {
    return this.next() < p;
  }

  pick<T>(items: readonly T[]): T {
    if (items.length === 0) throw new Error('rng: pick from an empty list');
    return items[this.int(0, items.length - 1)]!;
  }

  bytes(n: number): Uint8Array {
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i += 4) {
      const v = (this.next() * 4294967296) >>> 0;
      out[i] = v & 0xff;
      if (i + 1 < n) out[i + 1] = (v >>> 8) & 0xff;
      if (i + 2 < n) out[i + 2] = (v >>> 16) & 0xff;
      if (i + 3 < n) out[i + 3] = (v >>> 24) & 0xff;
    }
    return out;
  }

  /** A fresh generator derived from this one (independent streams for sub-tasks). */
  fork(): Rng {
    return new Rng((this.next() * 4294967296) >>> 0);
  }
}

/** A seed from the environment variable `name`, or a fresh random one. */
export function seedFromEnv(name = 'DELTADISK_SEED'): number {
  const v = Number(process.env[name]);
  return Number.isInteger(v) ? v >>> 0 : (Math.random() * 4294967296) >>> 0;
}

/** A positive integer from the environment variable `name`, or `fallback`. */
export function sizeFromEnv(name: string, fallback: number): number {
  const v = Number(process.env[name]);
  return Number.isFinite(v) && v > 0 ? Math.floor(v) : fallback;
}
