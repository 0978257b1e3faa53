/**
 * Content hash → stored copy, over the layers of one path (dedup and REF resolution).
 *
 * Keys are the first 48 bits of the SHA-256, so the map holds plain numbers; a hit
 * is confirmed against the full 32 bytes kept in the layer's record table, so a
 * prefix collision can never make two different blocks share storage.
 */
import type { RecordTable } from './record-table.js';

/** A stored copy: the layer's slot in the path and the row in its record table. */
export interface HashHit {
  readonly slot: number;
  readonly row: number;
}

function prefix(hash: Uint8Array): number {
  return hash[0]! * 2 ** 40 + hash[1]! * 2 ** 32 + hash[2]! * 2 ** 24 + ((hash[3]! << 16) | (hash[4]! << 8) | hash[5]!);
}

const SLOT_FACTOR = 2 ** 32;

export class HashIndex {
  readonly #map = new Map<number, number | number[]>();
  readonly #tables: (RecordTable | undefined)[] = [];

  get size(): number {
    return this.#map.size;
  }

  /** Registers the record table of the layer in `slot` (1-based). */
  setTable(slot: number, table: RecordTable): void {
    this.#tables[slot] = table;
  }

  add(slot: number, row: number, hash: Uint8Array): void {
    if (this.find(hash) !== undefined) return; // one copy is enough
    const key = prefix(hash);
    const packed = slot * SLOT_FACTOR + row;
    const cur = this.#map.get(key);
    if (cur === undefined) this.#map.set(key, packed);
    else if (typeof cur === 'number') this.#map.set(key, [cur, packed]);
    else cur.push(packed);
  }

  find(hash: Uint8Array): HashHit | undefined {
    const cur = this.#map.get(prefix(hash));
    if (cur === undefined) return undefined;
    if (typeof cur === 'number') return this.#check(cur, hash);
    for (const packed of cur) {
      const hit = this.#check(packed, hash);
      if (hit !== undefined) return hit;
    }
    return undefined;
  }

  #check(packed: number, hash: Uint8Array): HashHit | undefined {
    const slot = Math.floor(packed / SLOT_FACTOR);
    const row = packed - slot * SLOT_FACTOR;
    const table = this.#tables[slot];
    return table !== undefined && table.hashEquals(row, hash) ? { slot, row } : undefined;
  }

  /** Forgets every entry of slots at or above `slot` (the path was cut back). */
  dropFrom(slot: number): void {
    for (const [key, cur] of this.#map) {
      const keep = (typeof cur === 'number' ? [cur] : cur).filter((p) => Math.floor(p / SLOT_FACTOR) < slot);
      if (keep.length === 0) this.#map.delete(key);
      else this.#map.set(key, keep.length === 1 ? keep[0]! : keep);
    }
    this.#tables.length = Math.min(this.#tables.length, slot);
  }
}
