/**
 * Tools for hostile and damaged input (issue 4): the values to plant in numeric
 * fields, bit flips and cuts, and the bounds every variant must stay within: it
 * ends in a typed DeltaDiskError or in a result identical to the model, within 5 s,
 * without any allocation sized from an unchecked field (every Buffer allocation is
 * watched and must stay under a cap) and without the process growing unboundedly.
 */
import { DeltaDiskError } from '../../lib/errors.js';
import { Violation, withTimeout } from './workload.js';

/** Values planted in numeric fields: zero, sign and width edges, unsafe integers. */
export const HOSTILE_NUMBERS: readonly (number | bigint)[] = [
  0,
  1,
  -1,
  0.5,
  2 ** 31 - 1,
  2 ** 31,
  2 ** 32 - 1,
  2 ** 32,
  2 ** 53 - 1,
  2n ** 53n + 1n,
  2n ** 63n,
  2n ** 64n - 1n,
];

export function describeValue(v: unknown): string {
  if (typeof v === 'bigint') return v === 2n ** 64n - 1n ? '2^64-1' : v === 2n ** 63n ? '2^63' : v === 2n ** 53n + 1n ? '2^53+1' : `${v}n`;
  if (typeof v === 'number' && Number.isInteger(v) && v >= 2 ** 31 && Math.log2(v + 1) % 1 === 0) return `2^${Math.log2(v + 1)}-1`;
  if (typeof v === 'number' && Number.isInteger(v) && v >= 2 ** 31 && Math.log2(v) % 1 === 0) return `2^${Math.log2(v)}`;
  const s = JSON.stringify(v);
  return s === undefined ? String(v) : s.length > 40 ? `${s.slice(0, 37)}…` : s;
}

export function flipBit(bytes: Uint8Array, bit: number): Uint8Array {
  const out = Uint8Array.from(bytes);
  out[bit >> 3]! ^= 1 << (bit & 7);
  return out;
}

/**
 * Watches Buffer allocations while hostile input is parsed: the largest single
 * request is reported, so an allocation sized from an unchecked field (a 4 GiB
 * Buffer from a damaged length) cannot go unnoticed.
 */
export class AllocationWatch {
  largest = 0;
  readonly #originals: [keyof typeof Buffer, unknown][] = [];

  start(): void {
    for (const name of ['alloc', 'allocUnsafe', 'allocUnsafeSlow'] as const) {
      const original = Buffer[name] as (size: number, ...rest: unknown[]) => Buffer;
      this.#originals.push([name, original]);
      const watch = this;
      (Buffer as unknown as Record<string, unknown>)[name] = function (size: number, ...rest: unknown[]): Buffer {
        if (typeof size === 'number' && size > watch.largest) watch.largest = size;
        return original.call(Buffer, size, ...rest);
      };
    }
  }

  stop(): void {
    for (const [name, original] of this.#originals.splice(0)) (Buffer as unknown as Record<string, unknown>)[name] = original;
  }
}

/** How one attempt at using damaged input ended. */
export type Ending = { readonly kind: 'error'; readonly code: string } | { readonly kind: 'result' };

/** Runs `fn` under the time limit; a typed error is an ending, anything else thrown is a violation. */
export async function attempt(fn: () => Promise<void>, ms: number, what: string): Promise<Ending> {
  try {
    await withTimeout(fn(), ms, what);
    return { kind: 'result' };
  } catch (err) {
    if (err instanceof Violation) throw err;
    if (err instanceof DeltaDiskError) return { kind: 'error', code: err.code };
    throw new Violation(`${what} threw an untyped ${err instanceof Error ? `${err.name}: ${err.message}` : String(err)}`);
  }
}
