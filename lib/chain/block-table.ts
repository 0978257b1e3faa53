/**
 * A sparse map from block index to (tag, number), in memory proportional to the
 * blocks present rather than to the size of the virtual disk.
 *
 * Blocks are grouped in pages of 512; a page is allocated on first use and holds a
 * Uint16Array of tags and a Float64Array of numbers (10 bytes a block). A 1 TiB disk
 * with a few thousand scattered blocks costs a few thousand pages at most, and a
 * fully written layer ten bytes a block, against ~80 for a JS Map.
 *
 * Tag 0 means "absent". What tags and numbers mean is the user's business: a layer
 * maps block → (record kind, record index), the merged view block → (layer slot,
 * record index in that layer).
 */
const PAGE_BITS = 9;
const PAGE_SIZE = 1 << PAGE_BITS;
const PAGE_MASK = PAGE_SIZE - 1;

interface Page {
  readonly tags: Uint16Array;
  readonly nums: Float64Array;
  count: number;
}

export class BlockTable {
  readonly #pages = new Map<number, Page>();
  #size = 0;
  #lastIndex = -1;
  #lastPage: Page | undefined;

  /** Number of blocks present. */
  get size(): number {
    return this.#size;
  }

  #page(block: number): Page | undefined {
    const index = Math.floor(block / PAGE_SIZE);
    if (index === this.#lastIndex) return this.#lastPage;
    const page = this.#pages.get(index);
    this.#lastIndex = index;
    this.#lastPage = page;
    return page;
  }

  /** The page at `index`, made (empty) if there is none. */
  #pageAt(index: number): Page {
    let page = this.#pages.get(index);
    if (page === undefined) {
      page = { tags: new Uint16Array(PAGE_SIZE), nums: new Float64Array(PAGE_SIZE), count: 0 };
      this.#pages.set(index, page);
    }
    return page;
  }

  /** The tag of `block`, 0 when absent. */
  tag(block: number): number {
    const page = this.#page(block);
    return page === undefined ? 0 : page.tags[block & PAGE_MASK]!;
  }

  /** The number stored for `block` (meaningful only when its tag is not 0). */
  num(block: number): number {
    const page = this.#page(block);
    return page === undefined ? 0 : page.nums[block & PAGE_MASK]!;
  }

  has(block: number): boolean {
    return this.tag(block) !== 0;
  }

  set(block: number, tag: number, num: number): void {
    let page = this.#page(block);
    if (page === undefined) {
      const index = Math.floor(block / PAGE_SIZE);
      page = this.#pageAt(index);
      this.#lastIndex = index;
      this.#lastPage = page;
    }
    const i = block & PAGE_MASK;
    if (page.tags[i] === 0) {
      page.count++;
      this.#size++;
    }
    page.tags[i] = tag;
    page.nums[i] = num;
  }

  delete(block: number): void {
    const page = this.#page(block);
    if (page === undefined) return;
    const i = block & PAGE_MASK;
    if (page.tags[i] === 0) return;
    page.tags[i] = 0;
    page.nums[i] = 0;
    page.count--;
    this.#size--;
    if (page.count === 0) {
      const index = Math.floor(block / PAGE_SIZE);
      this.#pages.delete(index);
      this.#lastIndex = -1;
      this.#lastPage = undefined;
    }
  }

  /** A copy, a page at a time. */
  clone(): BlockTable {
    const out = new BlockTable();
    for (const [index, page] of this.#pages) out.#pages.set(index, { tags: page.tags.slice(), nums: page.nums.slice(), count: page.count });
    out.#size = this.#size;
    return out;
  }

  /**
   * Sets every block present in `src` to (`tag`, its number in `src`), a page at a
   * time (a full page of `src` is two array copies): how a view takes in a layer of
   * data alone, which on opening a large chain would otherwise be one call per block.
   */
  overlay(src: BlockTable, tag: number): void {
    if (tag === 0) throw new RangeError('tag 0 means absent');
    for (const [index, from] of src.#pages) {
      const page = this.#pageAt(index);
      if (from.count === PAGE_SIZE) {
        this.#size += PAGE_SIZE - page.count;
        page.count = PAGE_SIZE;
        page.tags.fill(tag);
        page.nums.set(from.nums);
        continue;
      }
      for (let i = 0; i < PAGE_SIZE; i++) {
        if (from.tags[i] === 0) continue;
        if (page.tags[i] === 0) {
          page.count++;
          this.#size++;
        }
        page.tags[i] = tag;
        page.nums[i] = from.nums[i]!;
      }
    }
    this.#lastIndex = -1;
    this.#lastPage = undefined;
  }

  /**
   * Sets block `blocks[i]` to (`tags[i]`, `first + i`) for each i < `count`, in order
   * (a later entry for a block wins), skipping entries tagged `skip`: how a layer's
   * open takes in a map segment, in one loop rather than a call per row. For a
   * caller keeping a count of one tag, returns how many entries it set to `counted`
   * and how many blocks held `counted` before being set.
   */
  assign(blocks: ArrayLike<number>, tags: ArrayLike<number>, first: number, count: number, skip: number, counted: number): { set: number; replaced: number } {
    let set = 0;
    let replaced = 0;
    let index = -1;
    let page: Page | undefined;
    for (let k = 0; k < count; k++) {
      const tag = tags[k]!;
      if (tag === skip) continue;
      if (tag === 0) throw new RangeError('tag 0 means absent');
      const block = blocks[k]!;
      const p = Math.floor(block / PAGE_SIZE);
      if (p !== index) {
        index = p;
        page = this.#pageAt(p);
      }
      const i = block & PAGE_MASK;
      const old = page!.tags[i]!;
      if (old === 0) {
        page!.count++;
        this.#size++;
      } else if (old === counted) {
        replaced++;
      }
      if (tag === counted) set++;
      page!.tags[i] = tag;
      page!.nums[i] = first + k;
    }
    this.#lastIndex = -1;
    this.#lastPage = undefined;
    return { set, replaced };
  }

  /** Calls `fn` for every present block in ascending block order. */
  forEach(fn: (block: number, tag: number, num: number) => void): void {
    const indexes = [...this.#pages.keys()].sort((a, b) => a - b);
    for (const index of indexes) {
      const page = this.#pages.get(index)!;
      const first = index * PAGE_SIZE;
      for (let i = 0; i < PAGE_SIZE; i++) {
        const tag = page.tags[i]!;
        if (tag !== 0) fn(first + i, tag, page.nums[i]!);
      }
    }
  }

  /** Present blocks in ascending order. */
  blocks(): number[] {
    const out: number[] = [];
    this.forEach((b) => out.push(b));
    return out;
  }

  /** Approximate heap bytes held. */
  get memoryBytes(): number {
    return this.#pages.size * (PAGE_SIZE * 10 + 64);
  }
}
