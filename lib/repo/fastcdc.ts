/**
 * Content-defined chunking: normalized FastCDC (Xia et al., USENIX ATC '16).
 *
 * A gear hash rolls over the bytes; a chunk ends where the hash's top bits are all
 * zero. Normalization (level 2) uses a stricter mask before the average size and a
 * looser one after it, which narrows the size distribution; the first `min` bytes of
 * a chunk are skipped without hashing, and a chunk never exceeds `max`. The gear
 * table derives from the repository's seed, so cut points differ per repository.
 * The hash rolls in gear-roll.ts (WebAssembly where available).
 *
 * Guarantees (tested): chunks concatenate to the input; every chunk but the last is
 * `min` … `max` bytes; the cut points do not depend on how the input is split into
 * `push` calls; an edit moves only the cut points near it.
 */
import { createHash } from 'node:crypto';
import { DeltaDiskError } from '../errors.js';
import type { ChunkerParams } from '../format/repo-config.js';
import { gearRoll, rolledHash } from './gear-roll.js';

/** The last table made, by seed: a backup chunks many files with its repository's one seed. */
let lastGear: { seed: string; table: Uint32Array } | undefined;

/** The gear table of `seed` (256 SHA-256 digests; callers must not change it). */
export function gearTable(seed: string): Uint32Array {
  if (lastGear?.seed === seed) return lastGear.table;
  const g = new Uint32Array(256);
  const seedBytes = Buffer.from(seed, 'hex');
  for (let i = 0; i < 256; i++) {
    g[i] = createHash('sha256').update(seedBytes).update(Buffer.from([i])).digest().readUInt32LE(0);
  }
  lastGear = { seed, table: g };
  return g;
}

function topBits(n: number): number {
  return n <= 0 ? 0 : n >= 32 ? -1 : (-1 << (32 - n)) | 0;
}

export class FastCdc {
  readonly #gear: Int32Array;
  readonly #min: number;
  readonly #avg: number;
  readonly #max: number;
  readonly #maskS: number;
  readonly #maskL: number;
  #fp = 0;
  #pos = 0;
  #pending: Buffer[] = [];

  constructor(params: ChunkerParams) {
    if (!(params.min >= 1 && params.min < params.avg && params.avg < params.max)) {
      throw new DeltaDiskError('INVALID_ARGUMENT', 'chunker sizes must satisfy 1 ≤ min < avg < max');
    }
    this.#gear = new Int32Array(gearTable(params.gearSeed).buffer);
    this.#min = params.min;
    this.#avg = params.avg;
    this.#max = params.max;
    const bits = Math.round(Math.log2(params.avg));
    this.#maskS = topBits(bits + 2);
    this.#maskL = topBits(bits - 2);
  }

  /**
   * Feeds the next bytes; returns the chunks completed by them (views where
   * possible). The chunker keeps no view of `buf`: once the returned chunks are dealt
   * with, the caller may reuse it.
   */
  push(buf: Buffer): Buffer[] {
    const out: Buffer[] = [];
    let from = 0;
    while (from < buf.length) {
      const cut = this.#scan(buf, from);
      if (cut < 0) {
        this.#pending.push(Buffer.from(buf.subarray(from)));
        break;
      }
      const piece = buf.subarray(from, cut);
      if (this.#pending.length === 0) out.push(piece);
      else {
        this.#pending.push(piece);
        out.push(Buffer.concat(this.#pending));
        this.#pending = [];
      }
      from = cut;
    }
    return out;
  }

  /** Ends the input; returns the last chunk, if any bytes are left. */
  finish(): Buffer | undefined {
    const rest = this.#pending.length === 0 ? undefined : this.#pending.length === 1 ? this.#pending[0] : Buffer.concat(this.#pending);
    this.#pending = [];
    this.#fp = 0;
    this.#pos = 0;
    return rest;
  }

  /** Scans `buf` from `from`; returns the index just past a cut point, or -1. */
  #scan(buf: Buffer, from: number): number {
    const n = buf.length;
    // The chunk's length at index i is base + i.
    const base = this.#pos - from;
    let i = from;
    if (base + i < this.#min) {
      i = Math.min(n, this.#min - base);
      if (base + i < this.#min) {
        this.#pos = base + i;
        return -1;
      }
    }
    const avgEnd = Math.min(n, this.#avg - base);
    let fp = this.#fp;
    if (i < avgEnd) {
      const cut = gearRoll(buf, i, avgEnd, fp, this.#gear, this.#maskS);
      if (cut >= 0) return this.#cut(cut);
      fp = rolledHash();
      i = avgEnd;
    }
    const maxEnd = Math.min(n, this.#max - base);
    if (i < maxEnd) {
      const cut = gearRoll(buf, i, maxEnd, fp, this.#gear, this.#maskL);
      if (cut >= 0) return this.#cut(cut);
      fp = rolledHash();
      i = maxEnd;
    }
    if (base + i >= this.#max) return this.#cut(i);
    this.#pos = base + i;
    this.#fp = fp;
    return -1;
  }

  #cut(at: number): number {
    this.#pos = 0;
    this.#fp = 0;
    return at;
  }
}
