/**
 * The reference model of a disk: what every read must return, and nothing else.
 *
 * A map of blocks for the current state and one per snapshot. Stored block buffers
 * are never mutated (a write makes new ones), so taking a snapshot is a shallow copy
 * of the map. The model knows nothing about layers, merges or files: that is the
 * point; the real disk must read the same whatever it does internally.
 */
export class DiskModel {
  readonly virtualSize: number;
  readonly blockSize: number;
  #current = new Map<number, Uint8Array>();
  readonly #snapshots = new Map<string, Map<number, Uint8Array>>();
  /** Snapshots taken as bookmarks (Disk.bookmark): readable like the others, never reverted to. */
  readonly #bookmarks = new Set<string>();
  /** The model of the last flushed state (what must survive a crash). */
  #durable = new Map<number, Uint8Array>();

  constructor(virtualSize: number, blockSize: number, initial?: Uint8Array) {
    this.virtualSize = virtualSize;
    this.blockSize = blockSize;
    if (initial !== undefined) this.write(0, initial.subarray(0, virtualSize));
    this.#durable = new Map(this.#current);
  }

  get snapshotNames(): string[] {
    return [...this.#snapshots.keys()];
  }

  hasSnapshot(name: string): boolean {
    return this.#snapshots.has(name);
  }

  #block(map: Map<number, Uint8Array>, b: number): Uint8Array {
    return map.get(b) ?? new Uint8Array(this.blockSize);
  }

  write(offset: number, data: Uint8Array): void {
    this.#apply(offset, data.length, data);
  }

  zero(offset: number, length: number): void {
    this.#apply(offset, length, null);
  }

  #apply(offset: number, length: number, data: Uint8Array | null): void {
    const bs = this.blockSize;
    let pos = offset;
    const end = offset + length;
    while (pos < end) {
      const b = Math.floor(pos / bs);
      const within = pos - b * bs;
      const n = Math.min(bs - within, end - pos);
      const next = Uint8Array.from(this.#block(this.#current, b));
      if (data === null) next.fill(0, within, within + n);
      else next.set(data.subarray(pos - offset, pos - offset + n), within);
      this.#current.set(b, next);
      pos += n;
    }
  }

  read(offset: number, length: number, snapshot?: string): Uint8Array {
    const map = snapshot === undefined ? this.#current : this.#snapshots.get(snapshot);
    if (map === undefined) throw new Error(`model: no snapshot ${snapshot}`);
    return readFrom(map, this.blockSize, offset, length);
  }

  flush(): void {
    this.#durable = new Map(this.#current);
  }

  snapshot(name: string): void {
    this.#snapshots.set(name, new Map(this.#current));
    this.#durable = new Map(this.#current);
  }

  /** A bookmark: the model's point in time is the same as a snapshot's. */
  bookmark(name: string): void {
    this.snapshot(name);
    this.#bookmarks.add(name);
  }

  isBookmark(name: string): boolean {
    return this.#bookmarks.has(name);
  }

  /**
   * Forgets the bookmarks not in `present`: a merge that moves a bookmarked layer's
   * rows drops its bookmarks (Disk.bookmark), which the model cannot foresee; what
   * it checks is that a bookmark still listed reads exactly its point in time.
   */
  forgetLostBookmarks(present: ReadonlySet<string>): void {
    for (const name of this.#bookmarks) {
      if (!present.has(name)) {
        this.#bookmarks.delete(name);
        this.#snapshots.delete(name);
      }
    }
  }

  revert(name: string, keepCurrentAs?: string): void {
    const snap = this.#snapshots.get(name);
    if (snap === undefined) throw new Error(`model: no snapshot ${name}`);
    if (keepCurrentAs !== undefined) this.#snapshots.set(keepCurrentAs, new Map(this.#current));
    this.#current = new Map(snap);
    this.#durable = new Map(this.#current);
  }

  deleteSnapshot(name: string): void {
    this.#snapshots.delete(name);
    this.#bookmarks.delete(name);
  }

  /** The state a crash may fall back to for unflushed blocks. */
  durableRead(offset: number, length: number): Uint8Array {
    return readFrom(this.#durable, this.blockSize, offset, length);
  }
}

function readFrom(map: Map<number, Uint8Array>, bs: number, offset: number, length: number): Uint8Array {
  const out = new Uint8Array(length);
  let pos = offset;
  const end = offset + length;
  while (pos < end) {
    const b = Math.floor(pos / bs);
    const within = pos - b * bs;
    const n = Math.min(bs - within, end - pos);
    const block = map.get(b);
    if (block !== undefined) out.set(block.subarray(within, within + n), pos - offset);
    pos += n;
  }
  return out;
}
