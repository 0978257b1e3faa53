/**
 * Content hash → stored copy, over the layers of one path (dedup and REF resolution).
 *
 * An open-addressing table in typed arrays, keyed by the first 32 bits of the
 * SHA-256 (uniform, so they index the table directly). A hit is confirmed against
 * the full 32 bytes kept in the layer's record table, so a prefix collision can never
 * make two different blocks share storage; colliding entries simply sit in later
 * cells of the probe sequence. Nothing is allocated per entry: a view builds this
 * index over every stored block of its path on its first dedup write (or to resolve
 * references), so its cost is on the path of the first write after an open or a
 * merge.
 */
import type { RecordTable } from './record-table.js';

/** A stored copy: the layer's slot in the path and the row in its record table. */
export interface HashHit {
  readonly slot: number;
  readonly row: number;
}

function prefix(hash: Uint8Array): number {
  return ((hash[0]! << 24) | (hash[1]! << 16) | (hash[2]! << 8) | hash[3]!) >>> 0;
}

const SLOT_FACTOR = 2 ** 32;
const INITIAL_CELLS = 1024;

export class HashIndex {
  /** Key of each cell (meaningful where `#packed` is non-zero). */
  #keys = new Uint32Array(INITIAL_CELLS);
  /** slot × 2^32 + row of each cell; 0 = empty (slots start at 1). */
  #packed = new Float64Array(INITIAL_CELLS);
  #size = 0;
  readonly #tables: (RecordTable | undefined)[] = [];

  /** Stored copies indexed. */
  get size(): number {
    return this.#size;
  }

  /** Registers the record table of the layer in `slot` (1-based). */
  setTable(slot: number, table: RecordTable): void {
    this.#tables[slot] = table;
  }

  /** Makes room for `more` entries at once (a layer's rows), instead of doubling step by step. */
  reserve(more: number): void {
    let cells = this.#packed.length;
    while ((this.#size + more) * 2 > cells) cells *= 2;
    if (cells > this.#packed.length) this.#rebuild(cells);
  }

  /** Indexes row `row` of the layer in `slot`, holding `hash`; the first copy of a content is kept. */
  add(slot: number, row: number, hash: Uint8Array): void {
    if (this.find(hash) !== undefined) return; // one copy is enough
    if ((this.#size + 1) * 2 > this.#packed.length) this.#rebuild(this.#packed.length * 2);
    this.#insert(prefix(hash), slot * SLOT_FACTOR + row);
    this.#size++;
  }

  find(hash: Uint8Array): HashHit | undefined {
    const key = prefix(hash);
    const mask = this.#packed.length - 1;
    for (let i = key & mask; ; i = (i + 1) & mask) {
      const packed = this.#packed[i]!;
      if (packed === 0) return undefined;
      if (this.#keys[i] === key) {
        const slot = Math.floor(packed / SLOT_FACTOR);
        const row = packed - slot * SLOT_FACTOR;
        if (this.#tables[slot]?.hashEquals(row, hash) === true) return { slot, row };
      }
    }
  }

  /** Forgets every entry of slots at or above `slot` (the path was cut back). */
  dropFrom(slot: number): void {
    this.#rebuild(this.#packed.length, (packed) => Math.floor(packed / SLOT_FACTOR) < slot);
    this.#tables.length = Math.min(this.#tables.length, slot);
  }

  #insert(key: number, packed: number): void {
    const mask = this.#packed.length - 1;
    let i = key & mask;
    while (this.#packed[i] !== 0) i = (i + 1) & mask;
    this.#keys[i] = key;
    this.#packed[i] = packed;
  }

  /** Re-inserts the entries `keep` accepts into a table of `cells` cells. */
  #rebuild(cells: number, keep: (packed: number) => boolean = () => true): void {
    const keys = this.#keys;
    const packed = this.#packed;
    this.#keys = new Uint32Array(cells);
    this.#packed = new Float64Array(cells);
    this.#size = 0;
    for (let i = 0; i < packed.length; i++) {
      const p = packed[i]!;
      if (p !== 0 && keep(p)) {
        this.#insert(keys[i]!, p);
        this.#size++;
      }
    }
  }
}
