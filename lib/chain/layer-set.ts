/**
 * The open layer files of one disk, opened on first use and shared.
 *
 * Every layer is opened against what the descriptor says it must be (disk id,
 * layer id, block size, virtual size and parent), so a swapped, foreign or
 * re-parented file is refused with CHAIN_CORRUPT. The one exception is a layer
 * whose header an interrupted operation was about to rewrite: the operation's
 * state record names it, and the parent check is waived for it until recovery
 * has rewritten the header.
 */
import { DeltaDiskError } from '../errors.js';
import type { Descriptor } from '../format/descriptor.js';
import type { FileSystem } from '../io/file-system.js';
import type { DiskPaths } from './descriptor-file.js';
import { LayerFile } from './layer-file.js';

export class LayerSet {
  readonly #fs: FileSystem;
  readonly #paths: DiskPaths;
  #writable: boolean;
  readonly #open = new Map<string, LayerFile>();
  readonly #pending = new Map<string, Promise<LayerFile>>();
  readonly #parentWaived = new Set<string>();

  constructor(fs: FileSystem, paths: DiskPaths, writable: boolean) {
    this.#fs = fs;
    this.#paths = paths;
    this.#writable = writable;
  }

  waiveParentCheck(id: string): void {
    this.#parentWaived.add(id);
  }

  clearWaivers(): void {
    this.#parentWaived.clear();
  }

  /** The open layer `id` of descriptor `d`, opening it if needed. */
  async get(d: Descriptor, id: string): Promise<LayerFile> {
    const open = this.#open.get(id);
    if (open !== undefined) return open;
    const pending = this.#pending.get(id);
    if (pending !== undefined) return pending;
    const entry = d.layers.find((l) => l.id === id);
    if (entry === undefined) throw new DeltaDiskError('CHAIN_CORRUPT', `layer ${id} is not part of the disk`, { layer: id });
    const promise = LayerFile.open(
      this.#fs,
      this.#paths.dir,
      entry.file,
      { diskId: d.diskId, layerId: id, blockSize: d.blockSize, virtualSize: d.virtualSize },
      this.#parentWaived.has(id) ? undefined : entry.parent,
      { writable: this.#writable },
    );
    this.#pending.set(id, promise);
    try {
      const layer = await promise;
      this.#open.set(id, layer);
      return layer;
    } finally {
      this.#pending.delete(id);
    }
  }

  /** The layers on the path of `ids`, opened concurrently. */
  async getAll(d: Descriptor, ids: readonly string[]): Promise<LayerFile[]> {
    return Promise.all(ids.map((id) => this.get(d, id)));
  }

  peek(id: string): LayerFile | undefined {
    return this.#open.get(id);
  }

  /** Registers a layer created by this disk. */
  add(layer: LayerFile): void {
    this.#open.set(layer.id, layer);
  }

  /** Drops a layer from the set (it was removed from the disk); views holding it keep reading. */
  async forget(id: string): Promise<void> {
    const layer = this.#open.get(id);
    this.#open.delete(id);
    if (layer !== undefined) await layer.release();
  }

  loaded(): LayerFile[] {
    return [...this.#open.values()];
  }

  /**
   * Opens layers read-only from now on, and makes the open ones take no more
   * appends (each indexes its tail first). The first error wins; a layer that
   * failed still takes no appends.
   */
  async stopWriting(): Promise<void> {
    this.#writable = false;
    await this.#eachOpen((layer) => layer.stopWriting());
  }

  /** Closes every layer: writable ones index their tails first. The first error wins. */
  async closeAll(): Promise<void> {
    try {
      await this.#eachOpen((layer) => layer.close());
    } finally {
      this.#open.clear();
    }
  }

  /** Runs `fn` on every open layer, each in turn whatever the others did; then throws the first error. */
  async #eachOpen(fn: (layer: LayerFile) => Promise<void>): Promise<void> {
    let first: unknown;
    for (const layer of this.#open.values()) {
      try {
        await fn(layer);
      } catch (err) {
        first ??= err;
      }
    }
    if (first !== undefined) throw first;
  }
}
