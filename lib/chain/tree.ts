/**
 * Questions about the shape of a disk, answered from its descriptor alone (no I/O).
 *
 * The layers form a tree rooted at the base: the active layer is a leaf, every
 * snapshot names a sealed layer, and a sealed layer that carries no snapshot is
 * kept only while it has two or more children (it is shared by branches). A layer
 * with no snapshot and exactly one child is *mergeable*; one with no snapshot and
 * no child (other than the active layer) is *droppable*.
 *
 * Bookmarks (snapshots that name a prefix of a layer's rows) are not "the snapshot
 * on" a layer: any number may sit on one, the active layer included, and they do not
 * keep a layer from being merged. A sealed leaf carrying one is not droppable (it is
 * read); a merge that moves a bookmarked layer's rows drops those bookmarks in its
 * switch (merge.ts).
 */
import { isBookmark, type Descriptor, type LayerEntry, type SnapshotEntry } from '../format/descriptor.js';

export class Tree {
  readonly d: Descriptor;
  readonly #byId = new Map<string, LayerEntry>();
  readonly #children = new Map<string, LayerEntry[]>();
  readonly #snapshotOf = new Map<string, SnapshotEntry>();
  readonly #bookmarksOf = new Map<string, SnapshotEntry[]>();

  constructor(d: Descriptor) {
    this.d = d;
    for (const l of d.layers) {
      this.#byId.set(l.id, l);
      this.#children.set(l.id, []);
    }
    for (const l of d.layers) if (l.parent !== null) this.#children.get(l.parent)!.push(l);
    for (const s of d.snapshots) {
      if (!isBookmark(s)) this.#snapshotOf.set(s.layer, s);
      else if (this.#bookmarksOf.has(s.layer)) this.#bookmarksOf.get(s.layer)!.push(s);
      else this.#bookmarksOf.set(s.layer, [s]);
    }
  }

  layer(id: string): LayerEntry {
    const l = this.#byId.get(id);
    if (l === undefined) throw new Error(`internal: layer ${id} is not in the tree`);
    return l;
  }

  has(id: string): boolean {
    return this.#byId.has(id);
  }

  children(id: string): readonly LayerEntry[] {
    return this.#children.get(id) ?? [];
  }

  snapshotOn(layerId: string): SnapshotEntry | undefined {
    return this.#snapshotOf.get(layerId);
  }

  /** The bookmarks on layer `layerId`, in descriptor order. */
  bookmarksOn(layerId: string): readonly SnapshotEntry[] {
    return this.#bookmarksOf.get(layerId) ?? [];
  }

  snapshotNamed(name: string): SnapshotEntry | undefined {
    return this.d.snapshots.find((s) => s.name === name);
  }

  /** The layers from the one on the base up to `id`, inclusive. */
  path(id: string): LayerEntry[] {
    const out: LayerEntry[] = [];
    let cur: LayerEntry | undefined = this.layer(id);
    while (cur !== undefined) {
      out.push(cur);
      cur = cur.parent === null ? undefined : this.#byId.get(cur.parent);
    }
    return out.reverse();
  }

  /** The nearest snapshot at or below `layerId` on its path (VMware's "parent snapshot"). */
  nearestSnapshot(layerId: string, inclusive: boolean): SnapshotEntry | undefined {
    const path = this.path(layerId);
    for (let i = path.length - (inclusive ? 1 : 2); i >= 0; i--) {
      const s = this.#snapshotOf.get(path[i]!.id);
      if (s !== undefined) return s;
    }
    return undefined;
  }

  /** Sealed layers that carry no snapshot and have exactly one child, oldest (deepest-down) first. */
  mergeable(): LayerEntry[] {
    return this.d.layers
      .filter((l) => l.id !== this.d.active && !this.#snapshotOf.has(l.id) && this.children(l.id).length === 1)
      .sort((a, b) => this.path(a.id).length - this.path(b.id).length);
  }

  /** Sealed leaves with no snapshot and no bookmark: nothing reads them. */
  droppable(): LayerEntry[] {
    return this.d.layers.filter((l) => l.id !== this.d.active && !this.#snapshotOf.has(l.id) && !this.#bookmarksOf.has(l.id) && this.children(l.id).length === 0);
  }

  /** Length of the longest base-to-leaf path. */
  maxDepth(): number {
    let max = 0;
    for (const l of this.d.layers) if (this.children(l.id).length === 0) max = Math.max(max, this.path(l.id).length);
    return max;
  }

  /** All layers in the subtree below `id` (excluding it), parents before children. */
  descendants(id: string): LayerEntry[] {
    const out: LayerEntry[] = [];
    const stack = [...this.children(id)];
    while (stack.length > 0) {
      const l = stack.shift()!;
      out.push(l);
      stack.push(...this.children(l.id));
    }
    return out;
  }
}
