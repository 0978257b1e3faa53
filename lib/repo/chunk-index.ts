/**
 * The in-memory index: chunk hash → where its bytes are (pack, offset, lengths).
 *
 * Built from the index files (and extended by a running backup as it seals packs),
 * it must scale to millions of chunks in bounded memory, so it is a struct of typed
 * arrays (≈ 60 bytes a chunk) with an open-addressing table over the hashes instead
 * of a Map of objects. Every entry of every pack is kept (prune and check account per
 * pack), but a hash resolves to one preferred entry: one in a pack that is neither
 * condemned by a prune plan nor marked bad by a verification, when there is one.
 */
import { DeltaDiskError } from '../errors.js';
import { PACK_ENTRY_SIZE, validatePackTail, type BlobKind, type Compression } from '../format/pack-header.js';
import type { ChunkIndexColumns } from '../format/index-cache.js';
import { HASH_SIZE } from '../format/repo-limits.js';

export type { ChunkIndexColumns } from '../format/index-cache.js';

export const PackFlag = {
  /** Listed in a prune plan: about to be deleted. */
  CONDEMNED: 1,
  /** Holds a blob that failed verification. */
  BAD: 2,
  /** Being written by this process; not yet named. */
  PENDING: 4,
} as const;

const AVOID = PackFlag.CONDEMNED | PackFlag.BAD;
/** 32-bit words in a hash. */
const WORDS = HASH_SIZE / 4;

function inconsistent(what: string): never {
  throw new DeltaDiskError('INVALID_ARGUMENT', `index columns: ${what}`);
}

export class ChunkIndex {
  // Packs.
  readonly #packNames: string[] = [];
  readonly #packSizes: number[] = [];
  readonly #packFirst: number[] = [];
  readonly #packCount: number[] = [];
  #packFlags = new Uint8Array(64);
  readonly #packIds = new Map<string, number>();
  // Entries.
  #cap = 0;
  #n = 0;
  #hash = new Uint8Array(0);
  /** `#hash` as 32-bit words (its own buffer, so aligned): hashes compared a word at a time. */
  #hashWords = new Int32Array(0);
  #pack = new Uint32Array(0);
  #offset = new Uint32Array(0);
  #stored = new Uint32Array(0);
  #raw = new Uint32Array(0);
  #meta = new Uint8Array(0);
  #preferred = new Uint8Array(0);
  // Open-addressing table: 0 empty, else entry id + 1.
  #table = new Int32Array(1024);
  #used = 0;

  /**
   * An index from columns (`columns()` of another, possibly another process's).
   * Copies them, after checking that they fit together: every pack and entry id in
   * range, each pack's entries contiguous and in order, one table slot per preferred
   * entry. (Hashes are not re-linked: that per-entry work is what the columns save.)
   * @throws INVALID_ARGUMENT when they do not
   */
  static fromColumns(c: ChunkIndexColumns): ChunkIndex {
    const packs = c.packNames.length;
    if (c.packSizes.length !== packs || c.packCounts.length !== packs || c.packFlags.length !== packs) inconsistent('pack columns differ in length');
    const n = c.pack.length;
    if (c.hash.length !== n * HASH_SIZE || c.offset.length !== n || c.stored.length !== n || c.raw.length !== n || c.meta.length !== n || c.preferred.length !== n) {
      inconsistent('entry columns differ in length');
    }
    const t = c.table.length;
    if (t < 1024 || (t & (t - 1)) !== 0) inconsistent('the table is not a power of two long');
    const index = new ChunkIndex();
    let first = 0;
    for (let p = 0; p < packs; p++) {
      const name = c.packNames[p]!;
      const count = c.packCounts[p]!;
      if (!/^[0-9a-f]{64}$/.test(name) || index.#packIds.has(name)) inconsistent(`pack name ${p} is not a distinct pack name`);
      if (!Number.isSafeInteger(c.packSizes[p]) || !Number.isSafeInteger(count) || count < 0 || first + count > n) inconsistent(`pack ${p} does not fit`);
      if ((c.packFlags[p]! & PackFlag.PENDING) !== 0) inconsistent(`pack ${p} is pending`);
      index.#newPack(name, c.packSizes[p]!, c.packFlags[p]!);
      index.#packFirst[p] = first;
      index.#packCount[p] = count;
      first += count;
    }
    if (first !== n) inconsistent('the packs do not account for every entry');
    let preferred = 0;
    for (let p = 0, id = 0; p < packs; p++) {
      for (const end = id + c.packCounts[p]!; id < end; id++) {
        if (c.pack[id] !== p) inconsistent(`entry ${id} is not in its pack's range`);
        if (c.preferred[id]! > 1) inconsistent(`entry ${id} has a bad preferred flag`);
        preferred += c.preferred[id]!;
      }
    }
    let used = 0;
    const seen = new Uint8Array(n);
    for (let s = 0; s < t; s++) {
      const v = c.table[s]!;
      if (v === 0) continue;
      if (v < 0 || v > n || c.preferred[v - 1] !== 1 || seen[v - 1] !== 0) inconsistent(`table slot ${s} does not name a preferred entry once`);
      seen[v - 1] = 1;
      used++;
    }
    if (used !== preferred || used * 2 > t) inconsistent('the table does not hold each preferred entry once');
    // Room to add to at once: a backup adds entries to the index it loaded, and
    // growing would copy every column (fresh memory, which costs page faults) for
    // the first new chunk. Room never written stays untouched virtual memory.
    index.#grow(Math.max(1024, n + (n >> 1)));
    index.#hash.set(c.hash);
    index.#pack.set(c.pack);
    index.#offset.set(c.offset);
    index.#stored.set(c.stored);
    index.#raw.set(c.raw);
    index.#meta.set(c.meta);
    index.#preferred.set(c.preferred);
    index.#n = n;
    index.#table = c.table.slice();
    index.#used = used;
    return index;
  }

  /**
   * The index as columns (views of its own arrays: copy before changing it).
   * @throws INVALID_ARGUMENT while a pack is still being written (it has no name yet)
   */
  columns(): ChunkIndexColumns {
    const packs = this.#packNames.length;
    for (let p = 0; p < packs; p++) if ((this.#packFlags[p]! & PackFlag.PENDING) !== 0) inconsistent('a pack is still being written');
    const n = this.#n;
    return {
      packNames: this.#packNames,
      packSizes: this.#packSizes,
      packCounts: this.#packCount,
      packFlags: this.#packFlags.subarray(0, packs),
      hash: this.#hash.subarray(0, n * HASH_SIZE),
      pack: this.#pack.subarray(0, n),
      offset: this.#offset.subarray(0, n),
      stored: this.#stored.subarray(0, n),
      raw: this.#raw.subarray(0, n),
      meta: this.#meta.subarray(0, n),
      preferred: this.#preferred.subarray(0, n),
      table: this.#table,
    };
  }

  get entryCount(): number {
    return this.#n;
  }

  get packCount(): number {
    return this.#packNames.length;
  }

  /**
   * Adds a pack from its header and trailer (as found in an index file or at the end
   * of the pack). A pack already known is ignored.
   * @returns the pack's id
   * @throws REPO_CORRUPT when the tail is damaged
   */
  addPack(name: string, size: number, tail: Uint8Array, flags = 0, path?: string): number {
    const known = this.#packIds.get(name);
    if (known !== undefined) return known;
    const count = validatePackTail(tail, size, path);
    const p = this.#newPack(name, size, flags);
    // Room made once, entries read in place through a DataView: a repository open
    // adds every entry of every pack, cold, so no entry object is built.
    this.reserve(count);
    const b = Buffer.from(tail.buffer, tail.byteOffset, tail.byteLength);
    const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
    const hashes = this.#hash;
    let offset = 0;
    for (let i = 0; i < count; i++) {
      const at = i * PACK_ENTRY_SIZE;
      const id = this.#n++;
      hashes.set(b.subarray(at, at + HASH_SIZE), id * HASH_SIZE);
      const stored = v.getUint32(at + 32, true);
      this.#pack[id] = p;
      this.#offset[id] = offset;
      this.#stored[id] = stored;
      this.#raw[id] = v.getUint32(at + 36, true);
      this.#meta[id] = v.getUint8(at + 40) | (v.getUint8(at + 41) << 4);
      this.#link(id);
      offset += stored;
    }
    this.#packCount[p] = this.#n - this.#packFirst[p]!;
    return p;
  }

  /**
   * Makes room for `entries` more entries at once (the index loader bounds the total
   * by its index files' sizes), instead of growing and rehashing step by step.
   */
  reserve(entries: number): void {
    const want = this.#n + entries;
    if (want > this.#cap) {
      let cap = Math.max(1024, this.#cap);
      while (cap < want) cap *= 2;
      this.#grow(cap);
    }
    let size = this.#table.length;
    while ((this.#used + entries) * 2 > size) size *= 2;
    if (size > this.#table.length) this.#rehash(size);
  }

  /** Starts a pack this process is writing; its entries resolve at once. */
  beginPack(): number {
    return this.#newPack('', 0, PackFlag.PENDING);
  }

  addPendingEntry(pack: number, hash: Uint8Array, offset: number, storedLength: number, rawLength: number, kind: BlobKind, compression: Compression): number {
    if (!(this.#packFlags[pack]! & PackFlag.PENDING) || this.#packFirst[pack]! + this.#packCount[pack]! !== this.#n) {
      throw new DeltaDiskError('INVALID_ARGUMENT', 'entries can only be added to the last pending pack');
    }
    const id = this.#addEntry(pack, hash, offset, storedLength, rawLength, kind, compression);
    this.#packCount[pack]!++;
    return id;
  }

  /** Names a pending pack once its header is written. */
  finishPack(pack: number, name: string, size: number): void {
    this.#packNames[pack] = name;
    this.#packSizes[pack] = size;
    this.#packFlags[pack] = this.#packFlags[pack]! & ~PackFlag.PENDING;
    this.#packIds.set(name, pack);
  }

  /** Drops the entries of the last pending pack (a pack that will not be written). */
  abandonPack(pack: number): void {
    if (pack !== this.#packNames.length - 1 || !(this.#packFlags[pack]! & PackFlag.PENDING)) return;
    const first = this.#packFirst[pack]!;
    for (let id = first; id < this.#n; id++) {
      if (this.#preferred[id]) this.#unlink(id);
    }
    this.#n = first;
    this.#packNames.pop();
    this.#packSizes.pop();
    this.#packFirst.pop();
    this.#packCount.pop();
  }

  packId(name: string): number | undefined {
    return this.#packIds.get(name);
  }

  /** The preferred entry for `hash`, or -1. */
  find(hash: Uint8Array): number {
    const v = this.#table[this.#slotOf(hash, 0)]!;
    return v === 0 ? -1 : v - 1;
  }

  /** The preferred entry for `hash` if a backup may reuse it (its pack is neither condemned nor bad), or -1. */
  findUsable(hash: Uint8Array): number {
    return this.findUsableAt(hash, 0);
  }

  /** `findUsable` of the hash at `at` in `bytes` (a chunk list page), without a view of it. */
  findUsableAt(bytes: Uint8Array, at: number): number {
    const v = this.#table[this.#slotOf(bytes, at)]!;
    const id = v - 1;
    return v !== 0 && (this.#packFlags[this.#pack[id]!]! & AVOID) === 0 ? id : -1;
  }

  /**
   * `findUsableAt` of each of the first `count` hashes of `page` (a chunk list
   * page): `out[k]` is 1 when hash `k` is usable, else 0. One loop comparing hashes
   * a word at a time: an incremental backup passes every unchanged chunk of a disk
   * through here, 16384 to a page, and one call per hash took ~85 ns each (warm; a
   * fresh process ~5 ms a page).
   * @throws INVALID_ARGUMENT when `page` or `out` is too short
   */
  usableInPage(page: Uint8Array, count: number, out: Uint8Array): void {
    if (!Number.isSafeInteger(count) || count < 0 || page.length < count * HASH_SIZE || out.length < count) {
      throw new DeltaDiskError('INVALID_ARGUMENT', `a page of ${page.length} bytes and ${out.length} results cannot hold ${count} hashes`);
    }
    // Words need an aligned page; one that is not (never a page read into its own
    // buffer) is copied.
    const aligned = (page.byteOffset & 3) === 0 ? page : new Uint8Array(page.subarray(0, count * HASH_SIZE));
    const q = new Int32Array(aligned.buffer, aligned.byteOffset, count * WORDS);
    const h = this.#hashWords;
    const table = this.#table;
    const mask = table.length - 1;
    for (let k = 0; k < count; k++) {
      const w = k * WORDS;
      let s = homeSlot(aligned, k * HASH_SIZE, mask);
      let v = table[s]!;
      while (v !== 0) {
        const e = (v - 1) * WORDS;
        if (h[e] === q[w] && h[e + 1] === q[w + 1] && h[e + 2] === q[w + 2] && h[e + 3] === q[w + 3] &&
          h[e + 4] === q[w + 4] && h[e + 5] === q[w + 5] && h[e + 6] === q[w + 6] && h[e + 7] === q[w + 7]) break;
        s = (s + 1) & mask;
        v = table[s]!;
      }
      out[k] = v !== 0 && (this.#packFlags[this.#pack[v - 1]!]! & AVOID) === 0 ? 1 : 0;
    }
  }

  /** Every entry holding `hash`, preferred or not (a linear scan: for the rare damaged chunk). */
  entriesWithHash(hash: Uint8Array): number[] {
    const out: number[] = [];
    for (let id = 0; id < this.#n; id++) if (this.#equalsAt(id, hash)) out.push(id);
    return out;
  }

  hashOf(id: number): Buffer {
    return Buffer.from(this.#hash.buffer, this.#hash.byteOffset + id * HASH_SIZE, HASH_SIZE);
  }
  packOf(id: number): number {
    return this.#pack[id]!;
  }
  offsetOf(id: number): number {
    return this.#offset[id]!;
  }
  storedLengthOf(id: number): number {
    return this.#stored[id]!;
  }
  rawLengthOf(id: number): number {
    return this.#raw[id]!;
  }
  kindOf(id: number): BlobKind {
    return (this.#meta[id]! & 0x0f) as BlobKind;
  }
  compressionOf(id: number): Compression {
    return (this.#meta[id]! >> 4) as Compression;
  }
  /** True when `id` is the entry its hash resolves to. */
  isPreferred(id: number): boolean {
    return this.#preferred[id] === 1;
  }

  packName(p: number): string {
    return this.#packNames[p]!;
  }
  packSize(p: number): number {
    return this.#packSizes[p]!;
  }
  packFlags(p: number): number {
    return this.#packFlags[p]!;
  }
  /** Entry ids of pack `p`: [first, first + count). */
  packEntries(p: number): { first: number; count: number } {
    return { first: this.#packFirst[p]!, count: this.#packCount[p]! };
  }

  // ---------------------------------------------------------------- internals

  #newPack(name: string, size: number, flags: number): number {
    const p = this.#packNames.length;
    this.#packNames.push(name);
    this.#packSizes.push(size);
    this.#packFirst.push(this.#n);
    this.#packCount.push(0);
    if (p >= this.#packFlags.length) {
      const grown = new Uint8Array(this.#packFlags.length * 2);
      grown.set(this.#packFlags);
      this.#packFlags = grown;
    }
    this.#packFlags[p] = flags;
    if (name !== '') this.#packIds.set(name, p);
    return p;
  }

  #addEntry(pack: number, hash: Uint8Array, offset: number, stored: number, raw: number, kind: BlobKind, compression: Compression): number {
    if (this.#n === this.#cap) this.#grow(Math.max(1024, this.#cap * 2));
    if ((this.#used + 1) * 2 > this.#table.length) this.#rehash(this.#table.length * 2);
    const id = this.#n++;
    this.#hash.set(hash, id * HASH_SIZE);
    this.#pack[id] = pack;
    this.#offset[id] = offset;
    this.#stored[id] = stored;
    this.#raw[id] = raw;
    this.#meta[id] = kind | (compression << 4);
    this.#link(id);
    return id;
  }

  /**
   * Enters entry `id` (its hash and pack already stored) in the table, with room
   * made by the caller: it becomes the preferred copy of its hash unless a copy in
   * a pack not avoided is there already.
   */
  #link(id: number): void {
    const slot = this.#slotOf(this.#hash, id * HASH_SIZE);
    const cur = this.#table[slot]!;
    this.#preferred[id] = 0;
    if (cur === 0) {
      this.#table[slot] = id + 1;
      this.#preferred[id] = 1;
      this.#used++;
      return;
    }
    const other = cur - 1;
    if ((this.#packFlags[this.#pack[other]!]! & AVOID) !== 0 && (this.#packFlags[this.#pack[id]!]! & AVOID) === 0) {
      this.#table[slot] = id + 1;
      this.#preferred[other] = 0;
      this.#preferred[id] = 1;
    }
  }

  /** Removes preferred entry `id` from the table, promoting another copy of the hash if there is one. */
  #unlink(id: number): void {
    const hash = this.hashOf(id);
    this.#preferred[id] = 0;
    let alt = -1;
    for (let e = 0; e < this.#n; e++) {
      if (e !== id && this.#equalsAt(e, hash) && (this.#pack[e]! !== this.#pack[id]!)) {
        alt = e;
        break;
      }
    }
    const slot = this.#slotOf(hash);
    if (alt >= 0) {
      this.#table[slot] = alt + 1;
      this.#preferred[alt] = 1;
      return;
    }
    this.#table[slot] = 0;
    this.#used--;
    // Re-insert the cluster after the hole (linear probing deletion).
    const mask = this.#table.length - 1;
    for (let s = (slot + 1) & mask; this.#table[s] !== 0; s = (s + 1) & mask) {
      const e = this.#table[s]! - 1;
      this.#table[s] = 0;
      this.#table[this.#slotOf(this.hashOf(e))] = e + 1;
    }
  }

  #grow(cap: number): void {
    const grow = <T extends Uint8Array | Uint32Array>(a: T, per: number, make: (n: number) => T): T => {
      const b = make(cap * per);
      b.set(a);
      return b;
    };
    this.#hash = grow(this.#hash, HASH_SIZE, (n) => new Uint8Array(n));
    this.#hashWords = new Int32Array(this.#hash.buffer, this.#hash.byteOffset, this.#hash.length >> 2);
    this.#pack = grow(this.#pack, 1, (n) => new Uint32Array(n));
    this.#offset = grow(this.#offset, 1, (n) => new Uint32Array(n));
    this.#stored = grow(this.#stored, 1, (n) => new Uint32Array(n));
    this.#raw = grow(this.#raw, 1, (n) => new Uint32Array(n));
    this.#meta = grow(this.#meta, 1, (n) => new Uint8Array(n));
    this.#preferred = grow(this.#preferred, 1, (n) => new Uint8Array(n));
    this.#cap = cap;
  }

  #rehash(size: number): void {
    this.#table = new Int32Array(size);
    this.#used = 0;
    // Preferred entries hold distinct hashes: each goes to the first empty slot of
    // its probe sequence, no comparison needed (and no view allocated per entry).
    const mask = size - 1;
    for (let id = 0; id < this.#n; id++) {
      if (this.#preferred[id] !== 1) continue;
      let slot = homeSlot(this.#hash, id * HASH_SIZE, mask);
      while (this.#table[slot] !== 0) slot = (slot + 1) & mask;
      this.#table[slot] = id + 1;
      this.#used++;
    }
  }

  /** The slot holding the hash at `from` in `hash`, or the empty slot where it would go. */
  #slotOf(hash: Uint8Array, from = 0): number {
    const mask = this.#table.length - 1;
    let s = homeSlot(hash, from, mask);
    for (;;) {
      const v = this.#table[s]!;
      if (v === 0 || this.#equalsAt(v - 1, hash, from)) return s;
      s = (s + 1) & mask;
    }
  }

  #equalsAt(id: number, hash: Uint8Array, from = 0): boolean {
    const h = this.#hash;
    const at = id * HASH_SIZE;
    for (let i = 0; i < HASH_SIZE; i++) if (h[at + i] !== hash[from + i]) return false;
    return true;
  }
}

/** The first slot of a hash's probe sequence: its first four bytes, masked (SHA-256 bits are uniform). */
function homeSlot(bytes: Uint8Array, at: number, mask: number): number {
  return (bytes[at]! | (bytes[at + 1]! << 8) | (bytes[at + 2]! << 16) | (bytes[at + 3]! << 24)) & mask;
}
