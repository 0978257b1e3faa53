/**
 * The reference model of a disk as the crash checker needs it: the project's
 * DiskModel (lib/testing/disk-model.ts), plus, for every block written since the
 * last acknowledged point, each version the block went through.
 *
 * After a crash an unacknowledged write must read back wholly old or wholly new per
 * block; with several unacknowledged writes to one block, any of its versions is a
 * state the disk really passed through. So a block may read as its durable content
 * or as any recorded version, and nothing else.
 */
import { DiskModel } from '../../lib/testing/disk-model.js';

/** What a disk may read as, derived from a model. */
export interface Expectation {
  readonly virtualSize: number;
  readonly blockSize: number;
  /** Every snapshot and its exact content. */
  readonly snapshots: ReadonlyMap<string, Uint8Array>;
  /** The current state as last acknowledged. */
  readonly durable: Uint8Array;
  /** The current state with every write applied. */
  readonly current: Uint8Array;
  /** Block → versions written since the last acknowledged point. */
  readonly versions: ReadonlyMap<number, readonly Uint8Array[]>;
}

export class ChainModel {
  readonly disk: DiskModel;
  readonly #versions = new Map<number, Uint8Array[]>();

  constructor(virtualSize: number, blockSize: number, initial?: Uint8Array) {
    this.disk = new DiskModel(virtualSize, blockSize, initial);
  }

  get virtualSize(): number {
    return this.disk.virtualSize;
  }

  get blockSize(): number {
    return this.disk.blockSize;
  }

  write(offset: number, data: Uint8Array): void {
    this.disk.write(offset, data);
    this.#note(offset, data.length);
  }

  zero(offset: number, length: number): void {
    this.disk.zero(offset, length);
    this.#note(offset, length);
  }

  flush(): void {
    this.disk.flush();
    this.#versions.clear();
  }

  snapshot(name: string): void {
    this.disk.snapshot(name);
    this.#versions.clear();
  }

  revert(name: string, keepCurrentAs?: string): void {
    this.disk.revert(name, keepCurrentAs);
    this.#versions.clear();
  }

  deleteSnapshot(name: string): void {
    this.disk.deleteSnapshot(name);
  }

  #note(offset: number, length: number): void {
    if (length === 0) return;
    const bs = this.blockSize;
    const first = Math.floor(offset / bs);
    const last = Math.floor((offset + length - 1) / bs);
    for (let b = first; b <= last; b++) {
      const start = b * bs;
      const len = Math.min(bs, this.virtualSize - start);
      const list = this.#versions.get(b) ?? [];
      list.push(this.disk.read(start, len));
      this.#versions.set(b, list);
    }
  }

  expectation(): Expectation {
    const size = this.virtualSize;
    const snapshots = new Map<string, Uint8Array>();
    for (const name of this.disk.snapshotNames) snapshots.set(name, this.disk.read(0, size, name));
    return {
      virtualSize: size,
      blockSize: this.blockSize,
      snapshots,
      durable: this.disk.durableRead(0, size),
      current: this.disk.read(0, size),
      versions: new Map([...this.#versions].map(([b, v]) => [b, [...v]])),
    };
  }
}

/** What was read from a disk. */
export interface Observed {
  readonly current: Uint8Array;
  readonly snapshots: ReadonlyMap<string, Uint8Array>;
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
}

function firstDifference(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return i;
  return n;
}

/** Why `o` is not a state `e` allows, or undefined when it is. */
export function mismatch(o: Observed, e: Expectation): string | undefined {
  const want = [...e.snapshots.keys()].sort();
  const got = [...o.snapshots.keys()].sort();
  if (want.join('\0') !== got.join('\0')) return `snapshots are [${got.join(', ')}], expected [${want.join(', ')}]`;
  for (const [name, content] of e.snapshots) {
    const actual = o.snapshots.get(name)!;
    if (!equalBytes(actual, content)) return `snapshot ${name} differs from the model at byte ${firstDifference(actual, content)}`;
  }
  if (o.current.length !== e.virtualSize) return `current state is ${o.current.length} bytes, expected ${e.virtualSize}`;
  const bs = e.blockSize;
  for (let start = 0, b = 0; start < e.virtualSize; start += bs, b++) {
    const end = Math.min(start + bs, e.virtualSize);
    const actual = o.current.subarray(start, end);
    if (equalBytes(actual, e.durable.subarray(start, end))) continue;
    if ((e.versions.get(b) ?? []).some((v) => equalBytes(actual, v))) continue;
    const versions = e.versions.get(b)?.length ?? 0;
    return `block ${b} of the current state is neither its acknowledged content nor any of its ${versions} unacknowledged versions (first difference from acknowledged at +${firstDifference(actual, e.durable.subarray(start, end))})`;
  }
  return undefined;
}

export function sameObserved(a: Observed, b: Observed): string | undefined {
  if (!equalBytes(a.current, b.current)) return `current state differs at byte ${firstDifference(a.current, b.current)}`;
  const an = [...a.snapshots.keys()].sort().join(', ');
  const bn = [...b.snapshots.keys()].sort().join(', ');
  if (an !== bn) return `snapshots [${an}] became [${bn}]`;
  for (const [name, content] of a.snapshots) {
    if (!equalBytes(content, b.snapshots.get(name)!)) return `snapshot ${name} changed`;
  }
  return undefined;
}
