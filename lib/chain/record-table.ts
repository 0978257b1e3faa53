/**
 * The records of one layer, in log order, as growable columns.
 *
 * Row i describes the i-th record that is still of use: its kind, block, file
 * offset, payload CRC and content hash (32 zero bytes when not computed). The
 * layer's block map points at rows; the dedup index points at rows too.
 */
import { HASH_SIZE, type SegmentEntries } from '../format/map-segment.js';
import type { RecordKind } from '../format/record.js';

const ZERO_HASH = new Uint8Array(HASH_SIZE);

export class RecordTable {
  #count = 0;
  #kinds = new Uint8Array(64);
  #blocks = new Float64Array(64);
  #offsets = new Float64Array(64);
  #crcs = new Uint32Array(64);
  #hashes = new Uint8Array(64 * HASH_SIZE);

  get count(): number {
    return this.#count;
  }

  /** Makes room for `n` more rows in one step (a layer's open knows its row count before loading them). */
  reserve(n: number): void {
    if (this.#count + n > this.#kinds.length) this.#resize(this.#count + n);
  }

  #grow(): void {
    this.#resize(this.#kinds.length * 2);
  }

  #resize(cap: number): void {
    const kinds = new Uint8Array(cap);
    kinds.set(this.#kinds);
    const blocks = new Float64Array(cap);
    blocks.set(this.#blocks);
    const offsets = new Float64Array(cap);
    offsets.set(this.#offsets);
    const crcs = new Uint32Array(cap);
    crcs.set(this.#crcs);
    const hashes = new Uint8Array(cap * HASH_SIZE);
    hashes.set(this.#hashes);
    this.#kinds = kinds;
    this.#blocks = blocks;
    this.#offsets = offsets;
    this.#crcs = crcs;
    this.#hashes = hashes;
  }

  /**
   * Appends a map segment's entries as rows (columns copied whole: a layer's open
   * loads every row this way, cold) and returns the first row's index.
   */
  pushMany(e: SegmentEntries): number {
    while (this.#count + e.count > this.#kinds.length) this.#grow();
    const at = this.#count;
    const n = e.count;
    this.#kinds.set(e.kinds.subarray(0, n), at);
    this.#blocks.set(e.blocks.subarray(0, n), at);
    this.#offsets.set(e.offsets.subarray(0, n), at);
    this.#crcs.set(e.crcs.subarray(0, n), at);
    this.#hashes.set(e.hashes.subarray(0, n * HASH_SIZE), at * HASH_SIZE);
    this.#count += n;
    return at;
  }

  /** Appends a row and returns its index. */
  push(kind: RecordKind, block: number, offset: number, crc: number, hash: Uint8Array | undefined): number {
    if (this.#count === this.#kinds.length) this.#grow();
    const i = this.#count++;
    this.#kinds[i] = kind;
    this.#blocks[i] = block;
    this.#offsets[i] = offset;
    this.#crcs[i] = crc;
    this.#hashes.set(hash ?? ZERO_HASH, i * HASH_SIZE);
    return i;
  }

  kind(i: number): RecordKind {
    return this.#kinds[i]! as RecordKind;
  }

  /** True when some row is of `kind` (a native scan of the kinds column). */
  hasKind(kind: RecordKind): boolean {
    return this.#kinds.subarray(0, this.#count).includes(kind);
  }

  block(i: number): number {
    return this.#blocks[i]!;
  }

  /** DATA and BLOB rows: file offset of the block's bytes; ZERO and REF rows: of the record header. */
  offset(i: number): number {
    return this.#offsets[i]!;
  }

  crc(i: number): number {
    return this.#crcs[i]!;
  }

  /** The row's hash, as a view (do not keep it across pushes). */
  hash(i: number): Uint8Array {
    return this.#hashes.subarray(i * HASH_SIZE, (i + 1) * HASH_SIZE);
  }

  /** True when row `i` holds exactly `hash` (no view allocated: hot in dedup lookups). */
  hashEquals(i: number, hash: Uint8Array): boolean {
    if (hash.length !== HASH_SIZE) return false;
    const h = this.#hashes;
    const at = i * HASH_SIZE;
    for (let k = 0; k < HASH_SIZE; k++) if (h[at + k] !== hash[k]) return false;
    return true;
  }

  hasHash(i: number): boolean {
    const h = this.#hashes;
    const at = i * HASH_SIZE;
    for (let k = 0; k < HASH_SIZE; k++) if (h[at + k] !== 0) return true;
    return false;
  }

  /** Columns of rows [from, to), for writing a map segment. */
  columns(from: number, to: number) {
    return {
      count: to - from,
      kinds: this.#kinds.slice(from, to),
      blocks: this.#blocks.slice(from, to),
      offsets: this.#offsets.slice(from, to),
      crcs: this.#crcs.slice(from, to),
      hashes: this.#hashes.slice(from * HASH_SIZE, to * HASH_SIZE),
    };
  }
}
