/**
 * A copy-on-write virtual disk: a read-only base, a tree of delta layers, and
 * snapshots on it. This is the public face of lib/chain.
 *
 * What it promises:
 *  - Reads cost one map lookup per block at any chain depth; extents of a request
 *    are read concurrently.
 *  - A write is durable once `flush()` resolves; before that, after a crash each
 *    block reads back either wholly old or wholly new. `snapshot`, `revert` and
 *    `deleteSnapshot` are durable when they resolve.
 *  - `snapshot` and `revert` are O(1) in the size of the disk: a few small file
 *    writes and fsyncs.
 *  - One writer per disk across processes (LOCKED); any number of read-only opens.
 *  - Bad input is a DeltaDiskError with a documented code, never a crash, hang or
 *    huge allocation; after a failed write or fsync the disk refuses further changes
 *    (HANDLE_BROKEN) until reopened, which recovers from what is on disk.
 * Public methods check state and arguments, then run a private implementation;
 * every change runs under one mutex.
 */
import { randomUUID } from 'node:crypto';
import path from 'node:path';
import { DeltaDiskError, fromSystemError, isDeltaDiskError } from '../errors.js';
import type { Descriptor, SnapshotEntry } from '../format/descriptor.js';
import { isBookmark, isValidSnapshotName } from '../format/descriptor.js';
import {
  DEFAULT_BLOCK_SIZE,
  LOG_START,
  MAX_DEPTH,
  MAX_DESCRIPTION_LENGTH,
  MAX_LAYERS,
  MAX_SNAPSHOTS,
  MAX_VIRTUAL_SIZE,
  isValidBlockSize,
} from '../format/limits.js';
import { RecordKind } from '../format/record.js';
import type { FileSystem } from '../io/file-system.js';
import { Mutex } from '../io/mutex.js';
import { nodeFileSystem } from '../io/node-file-system.js';
import { resolveReference } from '../io/path-guard.js';
import { acquireWriterLock, type WriterLock } from '../io/writer-lock.js';
import { openRawBase, zeroBase, type BaseImage } from './base-image.js';
import { BlockTable } from './block-table.js';
import { ChainView } from './chain-view.js';
import { createDescriptor, DiskPaths, encodeReadable, readDescriptor, readOpState, replaceDescriptor } from './descriptor-file.js';
import { DiskReader, type Extent } from './disk-reader.js';
import { LayerFile } from './layer-file.js';
import { LayerSet } from './layer-set.js';
import { layersWithPendingParent, reconcileHeader, runMerge } from './merge.js';
import type { ChainContext } from './chain-context.js';
import { checkDisk, type CheckOptions, type CheckReport } from './check.js';
import { compactLayer, type CompactResult } from './compact.js';
import { compactableLayers, consolidate, planConsolidation, type MaintenanceOps } from './consolidate.js';
import type {
  ConsolidateOptions,
  ConsolidateResult,
  CreateDiskOptions,
  DedupResult,
  DiskInfo,
  DiskOptions,
  DiskOutline,
  OpenDiskOptions,
  RevertOptions,
  SnapshotIdentity,
  SnapshotInfo,
} from './disk-types.js';
import { SNAPSHOT_ID } from './disk-types.js';
import { describeDisk } from './disk-info.js';
import { readHeaders, removeInterruptedCreate, removeLeftoverFiles } from './leftover-files.js';
import { Tree } from './tree.js';
import { planBatch, type PendingWrite, type WritePlan } from './write-plan.js';
import { WriteQueue } from './write-queue.js';

/**
 * A layer is compacted on its own once it holds this much overwritten data, and more
 * than half its log: the active layer on flush, a merge's survivor after a snapshot
 * delete. Rare, and what keeps a long-lived disk from growing without end.
 */
const AUTO_COMPACT_BYTES = 256 * 1024 * 1024;

function mostlyGarbage(layer: LayerFile): boolean {
  return layer.garbageBytes >= AUTO_COMPACT_BYTES && layer.garbageBytes >= 0.5 * (layer.logEnd - LOG_START);
}

/** A missing disk is NOT_FOUND for every opener, not LOCKED for all but one. */
async function assertDiskExists(fs: FileSystem, paths: DiskPaths): Promise<void> {
  await fs.lstat(paths.descriptor).catch((err: unknown) => {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new DeltaDiskError('NOT_FOUND', `no disk at ${paths.descriptor}`, { path: paths.descriptor, cause: err });
    }
    throw fromSystemError(err, paths.descriptor, 'opening disk failed');
  });
}

export type {
  ConsolidateOptions,
  ConsolidateResult,
  CreateDiskOptions,
  DedupResult,
  DiskInfo,
  DiskOptions,
  DiskOutline,
  LayerInfo,
  OpenDiskOptions,
  RevertOptions,
  SnapshotIdentity,
  SnapshotInfo,
} from './disk-types.js';

function invalid(message: string): never {
  throw new DeltaDiskError('INVALID_ARGUMENT', message);
}

function assertSize(n: unknown, what: string): asserts n is number {
  if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 0) invalid(`${what} must be a non-negative safe integer, got ${String(n)}`);
}

export class Disk {
  readonly path: string;
  #readOnly: boolean;
  readonly #fs: FileSystem;
  readonly #paths: DiskPaths;
  readonly #base: BaseImage;
  readonly #layers: LayerSet;
  #lock: WriterLock | undefined;
  readonly #mutex = new Mutex();
  readonly #writes = new WriteQueue(this.#mutex, (batch) => this.#guard(() => this.#applyBatch(batch)));
  #d: Descriptor;
  #tree: Tree;
  #view!: ChainView;
  #closed = false;
  #broken: DeltaDiskError | undefined;
  /** Reads check block CRCs (OpenDiskOptions.verifyReads). */
  #verifyReads = false;

  private constructor(fs: FileSystem, paths: DiskPaths, d: Descriptor, base: BaseImage, layers: LayerSet, readOnly: boolean, lock: WriterLock | undefined) {
    this.#fs = fs;
    this.#paths = paths;
    this.path = paths.descriptor;
    this.#d = d;
    this.#tree = new Tree(d);
    this.#base = base;
    this.#layers = layers;
    this.#readOnly = readOnly;
    this.#lock = lock;
  }

  // ================================================================ create / open

  /**
   * Creates a disk: a descriptor at `descriptorPath` (conventionally `<name>.chain`)
   * and its first, empty layer beside it. The leftover of a create interrupted before
   * its descriptor (an empty first delta, temporary descriptors) is removed first.
   * @throws INVALID_ARGUMENT, ALREADY_EXISTS (also for deltas of a lost descriptor),
   *   NOT_FOUND (base), UNSAFE_PATH, LOCKED
   */
  static async create(descriptorPath: string, options: CreateDiskOptions = {}): Promise<Disk> {
    const fs = options.fs ?? nodeFileSystem;
    const blockSize = options.blockSize ?? DEFAULT_BLOCK_SIZE;
    if (!isValidBlockSize(blockSize)) invalid(`block size ${blockSize} must be a power of two from 4 KiB to 1 MiB`);
    if (options.size !== undefined) assertSize(options.size, 'size');
    // Checked before the lock is taken, so a bad size never reports LOCKED instead.
    if (options.size === 0 || (options.size ?? 0) > MAX_VIRTUAL_SIZE) invalid(`size must be from 1 byte to ${MAX_VIRTUAL_SIZE} bytes`);
    if (options.base === undefined && options.size === undefined) invalid('a disk needs a size or a base image');
    const paths = new DiskPaths(descriptorPath);
    if (!(await fs.stat(paths.dir).then((s) => s.isDirectory, () => false))) {
      throw new DeltaDiskError('NOT_FOUND', `directory ${paths.dir} does not exist`, { path: paths.dir });
    }
    if (await fs.lstat(paths.descriptor).then(() => true, () => false)) {
      throw new DeltaDiskError('ALREADY_EXISTS', `${paths.descriptor} already exists`, { path: paths.descriptor });
    }
    const lock = (options.lock ?? fs === nodeFileSystem) ? await acquireWriterLock(paths.descriptor, 'create') : undefined;
    let base: BaseImage = zeroBase;
    const created: string[] = [];
    let describing = false;
    try {
      // A create cut short earlier left its first delta without a descriptor.
      await removeInterruptedCreate(fs, paths);
      let baseRef: Descriptor['base'] = null;
      let virtualSize = options.size ?? 0;
      if (options.base !== undefined) {
        // The user named the base explicitly: it is trusted wherever it is.
        const basePath = path.resolve(options.base);
        const real = await resolveReference(fs, path.dirname(basePath), path.basename(basePath), 'base image', [basePath]);
        const opened = await openRawBase(fs, real);
        base = opened.base;
        if (base.size === 0) invalid(`base image ${options.base} is empty`);
        if (options.size !== undefined && options.size !== base.size) {
          invalid(`size ${options.size} differs from the base image's ${base.size} bytes`);
        }
        virtualSize = base.size;
        const rel = path.relative(paths.dir, real);
        const inside = !rel.startsWith('..') && !path.isAbsolute(rel);
        baseRef = { file: inside ? rel : real, size: base.size, fingerprint: opened.fingerprint };
      }
      if (virtualSize === 0 || virtualSize > MAX_VIRTUAL_SIZE) invalid(`size must be from 1 byte to ${MAX_VIRTUAL_SIZE} bytes`);
      const diskId = randomUUID();
      const layerId = randomUUID();
      const file = paths.layerFile(1);
      const layer = await LayerFile.create(fs, paths.dir, file, {
        diskId,
        layerId,
        parentId: null,
        parentFile: null,
        base: baseRef,
        blockSize,
        virtualSize,
      });
      created.push(path.join(paths.dir, file));
      const d: Descriptor = {
        diskId,
        generation: 1,
        virtualSize,
        blockSize,
        dedup: options.dedup ?? true,
        base: baseRef,
        nextLayer: 2,
        active: layerId,
        layers: [{ id: layerId, file, parent: null, created: layer.header.created }],
        snapshots: [],
      };
      describing = true;
      await createDescriptor(fs, paths.descriptor, d);
      const layers = new LayerSet(fs, paths, true);
      layers.add(layer);
      const disk = new Disk(fs, paths, d, base, layers, false, lock);
      disk.#verifyReads = options.verifyReads ?? false;
      disk.#rebuildView(await layers.getAll(d, [layerId]));
      return disk;
    } catch (err) {
      // A descriptor that may exist (the failure came after its link: removing the
      // temporary name, syncing the directory) is taken back first: the delta is
      // removed only once no descriptor can name it, else the next create finds an
      // interrupted one (leftover-files.ts).
      const named = describing && !isDeltaDiskError(err, 'ALREADY_EXISTS') && !(await removedOrAbsent(fs, paths.descriptor));
      if (!named) for (const p of created) await fs.unlink(p).catch(() => undefined);
      await base.release();
      await lock?.release();
      throw err;
    }
  }

  /**
   * The disk's descriptor and snapshots, read from the descriptor alone: no lock, no
   * layer file opened or checked. For an inventory that opens the disk properly
   * later (a VM capture); `open` is what validates the chain.
   * @throws NOT_FOUND, CHAIN_CORRUPT (a descriptor that does not decode), UNSUPPORTED_VERSION
   */
  static async outline(descriptorPath: string, options: Pick<DiskOptions, 'fs'> = {}): Promise<DiskOutline> {
    const d = await readDescriptor(options.fs ?? nodeFileSystem, path.resolve(descriptorPath));
    return { descriptor: d, snapshots: snapshotList(d, new Tree(d)) };
  }

  /**
   * Deletes the bookmarks `names` of the disk at `descriptorPath` with one descriptor
   * replacement under the writer lock, opening no layer: what a VM backup does after
   * every run to the older capture point (opening both disks of a VM again for it
   * cost ~14 ms of CPU, each open reading and decoding a gigabyte layer's map). A
   * bookmark holds no data of its own, so nothing else changes. What `deleteSnapshot`
   * would do next is left for later, as after a crash between its two steps: rows
   * only the bookmark held go with the layer's next compaction (the active layer's on
   * a flush), a sealed leaf it alone kept with the next consolidation.
   *
   * Returns the names deleted (those still present). Deletes nothing and returns
   * undefined when one of them is a snapshot that is not a bookmark (a merge's work),
   * or an interrupted operation waits for an open to finish it: the caller then opens
   * the disk and deletes there.
   * @throws NOT_FOUND, LOCKED, LOCK_INVALID, CHAIN_CORRUPT, UNSUPPORTED_VERSION
   */
  static async deleteBookmarks(descriptorPath: string, names: readonly string[], options: Pick<OpenDiskOptions, 'fs' | 'lock'> = {}): Promise<string[] | undefined> {
    if (!Array.isArray(names) || names.some((n) => typeof n !== 'string')) invalid('names is a list of snapshot names');
    const fs = options.fs ?? nodeFileSystem;
    const paths = new DiskPaths(descriptorPath);
    await assertDiskExists(fs, paths);
    const lock = (options.lock ?? fs === nodeFileSystem) ? await acquireWriterLock(paths.descriptor, 'delete bookmarks') : undefined;
    try {
      const d = await readDescriptor(fs, paths.descriptor);
      if ((await readOpState(fs, paths.opState)) !== undefined) return undefined;
      const wanted = new Set(names);
      const going = d.snapshots.filter((x) => wanted.has(x.name));
      if (going.some((x) => !isBookmark(x))) return undefined;
      if (going.length === 0) return [];
      const ids = new Set(going.map((x) => x.id));
      await replaceDescriptor(fs, paths.descriptor, { ...d, generation: d.generation + 1, snapshots: d.snapshots.filter((x) => !ids.has(x.id)) });
      return going.map((x) => x.name);
    } finally {
      await lock?.release();
    }
  }

  /**
   * Opens a disk. A writable open takes the writer lock, finishes or refuses an
   * interrupted operation, truncates torn tails and removes files left over by an
   * interrupted snapshot, revert or merge.
   * @throws NOT_FOUND, LOCKED, LOCK_INVALID, CHAIN_CORRUPT, CHECKSUM_MISMATCH,
   *   UNSUPPORTED_VERSION, LIMIT_EXCEEDED, UNSAFE_PATH, BASE_MODIFIED, STATE_MISMATCH
   */
  static async open(descriptorPath: string, options: OpenDiskOptions = {}): Promise<Disk> {
    const fs = options.fs ?? nodeFileSystem;
    const readOnly = options.readOnly ?? false;
    const paths = new DiskPaths(descriptorPath);
    await assertDiskExists(fs, paths);
    const lock = !readOnly && (options.lock ?? fs === nodeFileSystem) ? await acquireWriterLock(paths.descriptor, 'open') : undefined;
    let base: BaseImage = zeroBase;
    let layers: LayerSet | undefined;
    try {
      const d = await readDescriptor(fs, paths.descriptor);
      if (d.base !== null) {
        const file = await resolveReference(fs, paths.dir, d.base.file, 'base image', options.allowPaths ?? []);
        base = (await openRawBase(fs, file, d.base)).base;
        if (base.size !== d.virtualSize) {
          throw new DeltaDiskError('CHAIN_CORRUPT', `base image size ${base.size} differs from the disk size ${d.virtualSize}`, { path: file });
        }
      }
      layers = new LayerSet(fs, paths, !readOnly);
      const op = await readOpState(fs, paths.opState);
      if (op !== undefined) {
        if (op.diskId !== d.diskId) {
          throw new DeltaDiskError('STATE_MISMATCH', `${paths.opState} belongs to another disk`, { path: paths.opState });
        }
        for (const id of layersWithPendingParent(d, op)) layers.waiveParentCheck(id);
      }
      const disk = new Disk(fs, paths, d, base, layers, readOnly, lock);
      disk.#verifyReads = options.verifyReads ?? false;
      if (!readOnly) {
        if (op !== undefined) await runMerge(disk.#context(), op);
        for (const l of disk.#tree.path(disk.#d.active)) await reconcileHeader(disk.#layers, disk.#d, l.id);
        await removeLeftoverFiles(fs, paths, disk.#d);
      }
      disk.#rebuildView(await disk.#pathLayers(disk.#d.active));
      return disk;
    } catch (err) {
      await layers?.closeAll().catch(() => undefined);
      await base.release();
      await lock?.release();
      throw err;
    }
  }

  /**
   * Checks the disk at `descriptorPath` for damage (see CheckReport); with `repair`,
   * fixes what is safe to fix. Works on disks too damaged to open.
   * @throws NOT_FOUND, UNSUPPORTED_VERSION, LOCKED (repairing a disk in use)
   */
  static async check(descriptorPath: string, options: CheckOptions = {}): Promise<CheckReport> {
    const fs = options.fs ?? nodeFileSystem;
    // Repairing holds the writer lock across analysis and repair (a plain check takes
    // no lock; on a disk in use it may report a write in progress as a torn tail).
    const lock = options.repair && fs === nodeFileSystem ? await acquireWriterLock(path.resolve(descriptorPath), 'check --repair') : undefined;
    try {
      return await checkDisk(descriptorPath, options, async (p, fsys, allowPaths) => {
        const disk = await Disk.open(p, { fs: fsys, allowPaths, lock: false });
        try {
          await disk.#exclusive(() => disk.#guard(() => disk.#repairLayers()));
        } finally {
          await disk.close();
        }
      });
    } finally {
      await lock?.release();
    }
  }

  /** Opens every layer writable (truncating torn tails) and rewrites stale headers. */
  async #repairLayers(): Promise<void> {
    for (const l of this.#d.layers) {
      await this.#layers.get(this.#d, l.id);
      await reconcileHeader(this.#layers, this.#d, l.id);
    }
  }

  // ================================================================ properties

  get virtualSize(): number {
    return this.#d.virtualSize;
  }

  get blockSize(): number {
    return this.#d.blockSize;
  }

  get dedup(): boolean {
    return this.#d.dedup;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** The descriptor as committed (a copy is not made: treat as read-only). */
  get descriptor(): Descriptor {
    return this.#d;
  }

  // ================================================================ I/O

  /**
   * Reads `length` bytes at `offset` of the current state.
   * @throws NOT_OPEN, INVALID_ARGUMENT, OUT_OF_RANGE, LIMIT_EXCEEDED, IO_ERROR, TRUNCATED,
   *   CHECKSUM_MISMATCH (with `verifyReads`)
   */
  read(offset: number, length: number): Promise<Buffer> {
    try {
      this.#assertOpen();
      this.#view.assertRange(offset, length);
    } catch (err) {
      return Promise.reject(err);
    }
    return this.#view.read(offset, length, this.#verifyReads);
  }

  /**
   * Fills `target` with the bytes of the current state at `offset`: `read` into
   * a caller's buffer, so a server can reuse its buffers instead of allocating
   * (and page-faulting) a fresh one per request.
   * @throws NOT_OPEN, INVALID_ARGUMENT, OUT_OF_RANGE, LIMIT_EXCEEDED, IO_ERROR, TRUNCATED
   */
  async readInto(target: Buffer, offset: number): Promise<void> {
    this.#assertOpen();
    if (!Buffer.isBuffer(target)) invalid('target must be a Buffer');
    this.#view.assertRange(offset, target.length);
    await this.#view.readInto(target, offset, this.#verifyReads);
  }

  /**
   * Writes `data` at `offset`. Durable after the next `flush()`. `data` is not
   * copied: it must not change until the returned promise settles (its checksums
   * are computed before it is written, as with `fs.write`).
   * @throws NOT_OPEN, READ_ONLY, HANDLE_BROKEN, INVALID_ARGUMENT, OUT_OF_RANGE, IO_ERROR, NO_SPACE
   */
  async write(offset: number, data: Uint8Array): Promise<void> {
    this.#assertWritable();
    if (!(data instanceof Uint8Array)) invalid('data must be a Uint8Array or Buffer');
    this.#view.assertRange(offset, data.length);
    if (data.length === 0) return;
    await this.#writes.enqueue({ offset, length: data.length, data });
  }

  /** Makes `length` bytes at `offset` read as zeros; whole blocks store no data. */
  async writeZeroes(offset: number, length: number): Promise<void> {
    this.#assertWritable();
    this.#view.assertRange(offset, length);
    if (length === 0) return;
    await this.#writes.enqueue({ offset, length, data: null });
  }

  /**
   * Discards `length` bytes at `offset`: they read as zeros afterwards, and the
   * space of whole blocks is given up (as with writeZeroes: deterministic, so a
   * discard never exposes older data).
   */
  async discard(offset: number, length: number): Promise<void> {
    await this.writeZeroes(offset, length);
  }

  /**
   * Makes every write so far durable. When the active layer has come to hold more
   * overwritten data than live data (and at least AUTO_COMPACT_BYTES of it), it is
   * compacted too: rare, and what keeps a long-lived disk from growing without end.
   */
  async flush(): Promise<void> {
    this.#assertWritable();
    await this.#exclusive(() =>
      this.#guard(async () => {
        const active = this.#view.top!;
        await active.sync();
        // The writes are durable already; a damaged block only keeps the layer
        // uncompacted (compaction never copies damage), for `check` to report.
        if (mostlyGarbage(active) && (await this.#compact(active.id))) this.#rebuildView(await this.#pathLayers(this.#d.active));
      }),
    );
  }

  /**
   * Runs `fn` under the mutex after everything issued before it. It closes the open
   * write batch, so writes issued after this call land after it (call order holds).
   */
  #exclusive<T>(fn: () => Promise<T>): Promise<T> {
    return this.#writes.closeBatchThen(fn);
  }

  async #applyBatch(batch: readonly PendingWrite[]): Promise<void> {
    const view = this.#view;
    const active = view.top!;
    const slot = view.depth;
    // Each piece is appended while the next one is being planned (checksummed); one
    // append is in flight at a time, and none is left running when this returns.
    let writing: Promise<void> = Promise.resolve();
    let landed = 0;
    try {
      for await (const plan of planBatch(view, batch, this.#d.dedup)) {
        await writing;
        writing = this.#appendPlan(view, active, slot, plan).then(() => void landed++);
        writing.catch(() => undefined); // awaited at the next piece or below
      }
      await writing;
    } catch (err) {
      await writing.catch(() => undefined);
      // Part of the batch is in the layer and part is not: whatever the error, the
      // disk takes no more changes until reopened (recovery reads what landed).
      if (landed > 0) this.#broken ??= err instanceof DeltaDiskError ? err : fromSystemError(err, this.path);
      throw err;
    }
  }

  /** Appends one planned piece to the active layer and points the view at its rows. */
  async #appendPlan(view: ChainView, active: LayerFile, slot: number, plan: WritePlan): Promise<void> {
    const added = await active.append(plan.runs);
    plan.blocks.forEach((pb, i) => {
      const row = added[i]!;
      if (pb.kind === RecordKind.DATA) {
        view.setData(pb.block, slot, row);
        if (pb.hash !== undefined) view.hashes?.add(slot, row, pb.hash);
      } else if (pb.kind === RecordKind.ZERO) {
        view.setZero(pb.block, slot);
      } else {
        const hit = view.hashes!.find(pb.hash)!;
        view.setData(pb.block, hit.slot, hit.row);
      }
    });
  }

  // ================================================================ snapshots

  /** The snapshot tree, oldest first. */
  snapshots(): SnapshotInfo[] {
    this.#assertOpen();
    return snapshotList(this.#d, this.#tree);
  }

  /**
   * Takes a snapshot of the current state. O(1) in the size of the disk.
   * @throws SNAPSHOT_EXISTS, INVALID_ARGUMENT, LIMIT_EXCEEDED, READ_ONLY, …
   */
  async snapshot(name: string, description = '', identity: SnapshotIdentity = {}): Promise<SnapshotInfo> {
    return this.#takePoint(name, description, identity, false);
  }

  /**
   * Takes a bookmark of the current state: a point in time that reads, exports,
   * backs up and compares (`changedBlocks`) like a snapshot, but seals nothing. It
   * names how many rows the active layer holds, so taking or deleting one is a
   * single descriptor replacement, and deleting it merges nothing. It cannot be
   * reverted to, and a merge that moves its layer's rows drops it (an incremental
   * backup anchored on it then reads the disk whole, deduplicated).
   * @throws SNAPSHOT_EXISTS, INVALID_ARGUMENT, LIMIT_EXCEEDED, READ_ONLY, …
   */
  async bookmark(name: string, description = '', identity: SnapshotIdentity = {}): Promise<SnapshotInfo> {
    return this.#takePoint(name, description, identity, true);
  }

  async #takePoint(name: string, description: string, identity: SnapshotIdentity, bookmark: boolean): Promise<SnapshotInfo> {
    this.#assertWritable();
    if (!isValidSnapshotName(name)) invalid(`snapshot name ${JSON.stringify(name)} must be 1 to 255 printable characters`);
    if (typeof description !== 'string' || description.length > MAX_DESCRIPTION_LENGTH) {
      invalid(`a description must be a string of at most ${MAX_DESCRIPTION_LENGTH} characters`);
    }
    if (identity.id !== undefined && !SNAPSHOT_ID.test(identity.id)) invalid(`snapshot id ${JSON.stringify(identity.id)} must be a UUID`);
    if (identity.created !== undefined && (typeof identity.created !== 'string' || Number.isNaN(Date.parse(identity.created)) || identity.created.length > 64)) {
      invalid(`snapshot time ${JSON.stringify(identity.created)} must be an ISO 8601 time`);
    }
    return this.#exclusive(() =>
      this.#guard(async () => {
        if (this.#tree.snapshotNamed(name) !== undefined) {
          throw new DeltaDiskError('SNAPSHOT_EXISTS', `a snapshot named ${JSON.stringify(name)} exists already`);
        }
        if (identity.id !== undefined && this.#d.snapshots.some((x) => x.id === identity.id)) {
          throw new DeltaDiskError('SNAPSHOT_EXISTS', `a snapshot with id ${identity.id} exists already`);
        }
        if (bookmark) await this.#bookmark(name, description, identity);
        else await this.#snapshot(name, description, identity);
        return this.snapshots().find((s) => s.name === name)!;
      }),
    );
  }

  async #snapshot(name: string, description: string, identity: SnapshotIdentity = {}): Promise<void> {
    const d = this.#d;
    if (d.snapshots.length >= MAX_SNAPSHOTS) throw new DeltaDiskError('LIMIT_EXCEEDED', `a disk holds at most ${MAX_SNAPSHOTS} snapshots`);
    if (d.layers.length >= MAX_LAYERS) throw new DeltaDiskError('LIMIT_EXCEEDED', `a disk holds at most ${MAX_LAYERS} layers; consolidate first`);
    if (this.#view.depth >= MAX_DEPTH) throw new DeltaDiskError('LIMIT_EXCEEDED', `the chain is ${MAX_DEPTH} layers deep; consolidate first`);
    const active = this.#view.top!;
    const snap: SnapshotEntry = { id: identity.id ?? randomUUID(), name, description, created: identity.created ?? new Date().toISOString(), layer: active.id };
    // 0. The descriptor this commits must be one an open accepts (8 MiB at most, its
    // counters in bounds): refused before anything changes, not after the seal.
    // The new layer's id and time are stand-ins of the same length.
    const standIn = randomUUID();
    encodeReadable(
      {
        ...d,
        generation: d.generation + 1,
        nextLayer: d.nextLayer + 1,
        active: standIn,
        layers: [...d.layers, { id: standIn, file: this.#paths.layerFile(d.nextLayer), parent: active.id, created: new Date().toISOString() }],
        snapshots: [...d.snapshots, snap],
      },
      this.#paths.descriptor,
    );
    // 1. The active layer's data durable and indexed, its header sealed with the tag.
    await active.sync();
    await active.seal({ id: snap.id, name, created: snap.created });
    // 2. The new, empty active layer on top of it.
    const next = await this.#createLayer(active.id);
    // 3. Commit: the descriptor names the snapshot and the new active layer.
    await this.#commit({
      ...d,
      generation: d.generation + 1,
      nextLayer: d.nextLayer + 1,
      active: next.id,
      layers: [...d.layers, { id: next.id, file: next.file, parent: active.id, created: next.header.created }],
      snapshots: [...d.snapshots, snap],
    });
    this.#view.pushLayer(next.retain());
  }

  async #bookmark(name: string, description: string, identity: SnapshotIdentity): Promise<void> {
    const d = this.#d;
    if (d.snapshots.length >= MAX_SNAPSHOTS) throw new DeltaDiskError('LIMIT_EXCEEDED', `a disk holds at most ${MAX_SNAPSHOTS} snapshots`);
    const active = this.#view.top!;
    // The rows it names must be durable before a descriptor names them. They keep
    // their numbers: a reopen finds the same records in the same order.
    await active.sync();
    const mark: SnapshotEntry = {
      id: identity.id ?? randomUUID(),
      name,
      description,
      created: identity.created ?? new Date().toISOString(),
      layer: active.id,
      rows: active.records.count,
    };
    await this.#commit({ ...d, generation: d.generation + 1, snapshots: [...d.snapshots, mark] });
  }

  async #createLayer(parentId: string): Promise<LayerFile> {
    const d = this.#d;
    const file = this.#paths.layerFile(d.nextLayer);
    const layer = await LayerFile.create(this.#fs, this.#paths.dir, file, {
      diskId: d.diskId,
      layerId: randomUUID(),
      parentId,
      parentFile: this.#tree.layer(parentId).file,
      base: d.base,
      blockSize: d.blockSize,
      virtualSize: d.virtualSize,
    });
    this.#layers.add(layer);
    return layer;
  }

  /**
   * Makes the current state that of snapshot `name`. The current state is
   * discarded unless `keepCurrentAs` names a snapshot to keep it under. O(1).
   * @throws SNAPSHOT_NOT_FOUND, SNAPSHOT_EXISTS, READ_ONLY, …
   */
  async revert(name: string, options: RevertOptions = {}): Promise<void> {
    this.#assertWritable();
    if (options.keepCurrentAs !== undefined && !isValidSnapshotName(options.keepCurrentAs)) {
      invalid(`snapshot name ${JSON.stringify(options.keepCurrentAs)} is not valid`);
    }
    await this.#exclusive(() =>
      this.#guard(async () => {
        const target = this.#findSnapshot(name);
        if (isBookmark(target)) invalid(`${JSON.stringify(name)} is a bookmark: it can be read, exported or backed up, not reverted to`);
        if (options.keepCurrentAs !== undefined) {
          if (this.#tree.snapshotNamed(options.keepCurrentAs) !== undefined) {
            throw new DeltaDiskError('SNAPSHOT_EXISTS', `a snapshot named ${JSON.stringify(options.keepCurrentAs)} exists already`);
          }
          await this.#snapshot(options.keepCurrentAs, `state before reverting to ${name}`);
        }
        await this.#revert(target);
      }),
    );
  }

  async #revert(target: SnapshotEntry): Promise<void> {
    const d = this.#d;
    const old = this.#view.top!;
    const next = await this.#createLayer(target.layer);
    await this.#commit({
      ...d,
      generation: d.generation + 1,
      nextLayer: d.nextLayer + 1,
      active: next.id,
      layers: [...d.layers.filter((l) => l.id !== old.id), { id: next.id, file: next.file, parent: target.layer, created: next.header.created }],
      // Bookmarks of the discarded state go with it.
      snapshots: d.snapshots.filter((x) => x.layer !== old.id),
    });
    await this.#removeLayerFile(old.id, old.file);
    this.#rebuildView(await this.#pathLayers(next.id));
  }

  /**
   * Deletes snapshot `name`: its point in time disappears, every other snapshot and
   * the current state read exactly as before, and layers that no longer carry a
   * snapshot and have one child are merged away.
   * @throws SNAPSHOT_NOT_FOUND, READ_ONLY, STATE_MISMATCH, …
   */
  async deleteSnapshot(name: string): Promise<void> {
    this.#assertWritable();
    await this.#exclusive(() =>
      this.#guard(async () => {
        const snap = this.#findSnapshot(name);
        const d = this.#d;
        await this.#commit({ ...d, generation: d.generation + 1, snapshots: d.snapshots.filter((s) => s.id !== snap.id) });
        const merged = await this.#consolidate(undefined, 1);
        // A layer that lost its snapshot but stays (shared by branches) drops the tag too.
        if (!isBookmark(snap) && this.#tree.has(snap.layer)) await reconcileHeader(this.#layers, this.#d, snap.layer);
        // A merge that copied into a layer left the blocks it replaced there: a backup
        // deletes its older anchor after every backup, each time copying what changed
        // into the large layer below, which would otherwise grow by that much forever.
        // Likewise a bookmark held the blocks overwritten since in its layer: with
        // bookmarks for anchors, the active layer takes every overwrite.
        let compacted = false;
        for (const id of new Set([...merged.merges.flatMap((m) => m.survivors), ...(isBookmark(snap) ? [snap.layer] : [])])) {
          if (this.#tree.has(id) && mostlyGarbage(await this.#layers.get(this.#d, id))) compacted = (await this.#compact(id)) || compacted;
        }
        if (compacted) this.#rebuildView(await this.#pathLayers(this.#d.active));
      }),
    );
  }

  /**
   * Merges away every layer that carries no snapshot and has a single child, drops
   * sealed leaves nothing reads, keeps paths within `maxDepth`, and compacts layers
   * full of overwritten data. Idempotent: a second run does nothing.
   * @throws INVALID_ARGUMENT, READ_ONLY, STATE_MISMATCH, …
   */
  async consolidate(options: ConsolidateOptions = {}): Promise<ConsolidateResult> {
    if (options.maxDepth !== undefined && (!Number.isSafeInteger(options.maxDepth) || options.maxDepth < 1)) {
      invalid('maxDepth must be a whole number ≥ 1');
    }
    const threshold = options.compactThreshold ?? 0.25;
    if (typeof threshold !== 'number' || !(threshold > 0 && threshold <= 1)) invalid('compactThreshold must be in (0, 1]');
    if (options.dryRun) {
      this.#assertOpen();
      return planConsolidation(this.#maintenance(), options.maxDepth, threshold);
    }
    this.#assertWritable();
    return this.#exclusive(() => this.#guard(() => this.#consolidate(options.maxDepth, threshold)));
  }

  /** Compacts layer `id`; false when a damaged block stopped it (compaction never copies damage). */
  async #compact(id: string): Promise<boolean> {
    try {
      await compactLayer(this.#context(), id, { dedup: false });
      return true;
    } catch (err) {
      if (!isDeltaDiskError(err, 'CHECKSUM_MISMATCH')) throw err;
      return false;
    }
  }

  async #consolidate(maxDepth: number | undefined, threshold: number): Promise<ConsolidateResult> {
    const result = await consolidate(this.#maintenance(), maxDepth, threshold);
    if (result.steps.length > 0 || result.compacted.length > 0) {
      for (const l of this.#tree.path(this.#d.active)) await reconcileHeader(this.#layers, this.#d, l.id);
      this.#rebuildView(await this.#pathLayers(this.#d.active));
    }
    return result;
  }

  #maintenance(): MaintenanceOps {
    return {
      ctx: this.#context(),
      removeLayerFile: (id, file) => this.#removeLayerFile(id, file),
    };
  }

  /**
   * Rewrites every layer so blocks identical to one already stored in the same
   * layer or an ancestor become references, and all-zero blocks zero markers (the
   * offline pass of `deltadisk dedup`). Every snapshot and the current state read
   * exactly as before.
   */
  async dedupAll(): Promise<DedupResult> {
    this.#assertWritable();
    return this.#exclusive(() =>
      this.#guard(async () => {
        const results: CompactResult[] = [];
        // Parents before children, so each layer deduplicates against finished ancestors.
        const order = [...this.#d.layers].sort((a, b) => this.#tree.path(a.id).length - this.#tree.path(b.id).length);
        for (const l of order) results.push(await compactLayer(this.#context(), l.id, { dedup: true }));
        this.#rebuildView(await this.#pathLayers(this.#d.active));
        return {
          layers: results,
          dedupedBlocks: results.reduce((n, r) => n + r.dedupedBlocks, 0),
          zeroedBlocks: results.reduce((n, r) => n + r.zeroedBlocks, 0),
          bytesBefore: results.reduce((n, r) => n + r.bytesBefore, 0),
          bytesAfter: results.reduce((n, r) => n + r.bytesAfter, 0),
        };
      }),
    );
  }

  /** Compacts layer files holding overwritten data (threshold: share of the log, default 0.25). */
  async compact(threshold = 0.25): Promise<CompactResult[]> {
    this.#assertWritable();
    if (typeof threshold !== 'number' || !(threshold > 0 && threshold <= 1)) invalid('threshold must be in (0, 1]');
    return this.#exclusive(() =>
      this.#guard(async () => {
        const out: CompactResult[] = [];
        for (const id of await compactableLayers(this.#context(), threshold)) out.push(await compactLayer(this.#context(), id, { dedup: false }));
        if (out.length > 0) this.#rebuildView(await this.#pathLayers(this.#d.active));
        return out;
      }),
    );
  }

  /**
   * Opens snapshot `name` for reading, without reverting. The reader stays valid
   * until closed, even if the snapshot is deleted meanwhile. It checks block CRCs
   * as the disk does (OpenDiskOptions.verifyReads) unless `options` says otherwise.
   * @throws SNAPSHOT_NOT_FOUND
   */
  async openSnapshot(name: string, options: { readonly verifyReads?: boolean } = {}): Promise<DiskReader> {
    this.#assertOpen();
    const verify = options.verifyReads ?? this.#verifyReads;
    const snap = this.#findSnapshot(name);
    const layers = await this.#pathLayers(snap.layer);
    const view = ChainView.build(this.#base, layers, this.virtualSize, this.blockSize, { indexHashes: false, ...(snap.rows === undefined ? {} : { topRows: snap.rows }) });
    for (const l of layers) l.retain();
    this.#base.retain();
    return new DiskReader(view, snap.name, verify, async () => {
      for (const l of layers) await l.release();
      await this.#base.release();
    });
  }

  /** A reader of the current state (shares this disk's view; closing it does nothing). */
  currentReader(): DiskReader {
    this.#assertOpen();
    return new DiskReader(
      () => {
        this.#assertOpen(); // after close the view's files are closed too
        return this.#view;
      },
      undefined,
      this.#verifyReads,
      async () => undefined,
    );
  }

  /**
   * The blocks that may differ between snapshot `from` and snapshot `to` (the
   * current state when `to` is undefined), in ascending order. Computed from the
   * layers themselves: every block written on either side since the two points in
   * time share a layer. A superset of the blocks whose content differs (a block
   * rewritten with the same bytes is listed), never a subset; this is the change map
   * an incremental backup reads.
   * @throws SNAPSHOT_NOT_FOUND
   */
  async changedBlocks(from: string, to?: string): Promise<number[]> {
    this.#assertOpen();
    const a = this.#findSnapshot(from);
    const b = to === undefined ? undefined : this.#findSnapshot(to);
    // Each point in time sees a prefix of the rows of every layer on its path: all
    // of them, or a bookmark's count on its own layer. A block may differ only if
    // one side sees a row of it that the other does not.
    const seen = (layer: string, rows: number | undefined): Map<string, number> =>
      new Map(this.#tree.path(layer).map((l) => [l.id, l.id === layer && rows !== undefined ? rows : Infinity]));
    const sa = seen(a.layer, a.rows);
    const sb = b === undefined ? seen(this.#d.active, undefined) : seen(b.layer, b.rows);
    const ids = [...new Set([...sa.keys(), ...sb.keys()])].filter((id) => sa.get(id) !== sb.get(id));
    const layers = await this.#layers.getAll(this.#d, ids);
    const changed = new BlockTable();
    for (const layer of layers) {
      const x = sa.get(layer.id) ?? 0;
      const y = sb.get(layer.id) ?? 0;
      const count = layer.records.count;
      for (const r of [x, y]) if (r !== Infinity) layer.assertRows(r);
      const end = Math.min(Math.max(x, y), count);
      const t = layer.records;
      for (let r = Math.min(x, y); r < end; r++) if (t.kind(r) !== RecordKind.BLOB) changed.set(t.block(r), 1, 0);
    }
    return changed.blocks();
  }

  /**
   * Every file this disk consists of: descriptor, deltas, base (when it has one),
   * and the lock and operation-state files. Writing to any of them would damage it.
   */
  files(): string[] {
    this.#assertOpen();
    const out = [this.#paths.descriptor, `${this.#paths.descriptor}.lock`, this.#paths.opState];
    for (const l of this.#d.layers) out.push(path.join(this.#paths.dir, l.file));
    if (this.#base.path !== undefined) out.push(this.#base.path);
    return out;
  }

  /** The current state as extents served from the same place (as `qemu-img map`). */
  extents(): Extent[] {
    return this.currentReader().extents();
  }

  // ================================================================ info and close

  async info(): Promise<DiskInfo> {
    this.#assertOpen();
    const d = this.#d;
    return describeDisk(this.path, d, this.#tree, await this.#layers.getAll(d, d.layers.map((l) => l.id)));
  }

  /** Flushes, indexes the active layer's tail and releases everything. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    await this.#exclusive(async () => {
      if (this.#closed) return;
      this.#closed = true;
      try {
        if (this.#broken === undefined) await this.#layers.closeAll();
        else await this.#layers.closeAll().catch(() => undefined);
      } finally {
        await releaseLayers(this.#view.layers);
        await this.#base.release();
        await this.#lock?.release();
      }
    });
  }

  /**
   * Gives up writing and keeps reading: makes every write so far durable, indexes
   * the active layer's tail, releases the writer lock, and leaves the disk open
   * read-only. Its snapshots and bookmarks read as before whoever writes the disk
   * next (records are only appended, and a layer another writer rewrites or removes
   * stays readable through the file this disk holds open); its current state reads
   * as it was at this call. A VM capture takes its bookmarks under the lock and then
   * reads them through the same disk, without opening it a second time. Nothing
   * happens on a disk open read-only already.
   * @throws NOT_OPEN, HANDLE_BROKEN, and the errors of `flush` (the disk then stays
   *   open for writing, or broken)
   */
  async downgrade(): Promise<void> {
    this.#assertOpen();
    if (this.#readOnly) return;
    await this.flush();
    await this.#exclusive(() =>
      this.#guard(async () => {
        await this.#layers.stopWriting();
        this.#readOnly = true;
        const lock = this.#lock;
        this.#lock = undefined;
        await lock?.release();
      }),
    );
  }

  /** Whether the disk takes no writes: opened read-only, or downgraded. */
  get readOnly(): boolean {
    return this.#readOnly;
  }

  // ================================================================ internals

  #assertOpen(): void {
    if (this.#closed) throw new DeltaDiskError('NOT_OPEN', `${this.path} is closed`, { path: this.path });
  }

  #assertWritable(): void {
    this.#assertOpen();
    if (this.#readOnly) throw new DeltaDiskError('READ_ONLY', `${this.path} is open read-only`, { path: this.path });
    if (this.#broken !== undefined) {
      throw new DeltaDiskError('HANDLE_BROKEN', `${this.path}: an earlier change failed (${this.#broken.message}); reopen the disk`, {
        path: this.path,
        cause: this.#broken,
      });
    }
  }

  /**
   * Runs a change; an I/O failure in it leaves the on-disk state possibly ahead of
   * memory, so the disk refuses further changes until reopened. Argument and state
   * errors (the change never started) do not break it.
   */
  async #guard<T>(fn: () => Promise<T>): Promise<T> {
    this.#assertWritable();
    try {
      return await fn();
    } catch (err) {
      const e = err instanceof DeltaDiskError ? err : fromSystemError(err, this.path);
      const harmless = ['SNAPSHOT_EXISTS', 'SNAPSHOT_NOT_FOUND', 'INVALID_ARGUMENT', 'OUT_OF_RANGE', 'LIMIT_EXCEEDED'].includes(e.code);
      if (!harmless) this.#broken = e;
      throw e;
    }
  }

  #findSnapshot(name: string): SnapshotEntry {
    if (typeof name !== 'string') invalid('a snapshot name must be a string');
    const s = this.#tree.snapshotNamed(name);
    if (s === undefined) throw new DeltaDiskError('SNAPSHOT_NOT_FOUND', `no snapshot named ${JSON.stringify(name)}`);
    return s;
  }

  async #commit(next: Descriptor): Promise<void> {
    await replaceDescriptor(this.#fs, this.#paths.descriptor, next);
    this.#d = next;
    this.#tree = new Tree(next);
  }

  async #pathLayers(layerId: string): Promise<LayerFile[]> {
    return this.#layers.getAll(this.#d, this.#tree.path(layerId).map((l) => l.id));
  }

  /**
   * Replaces the current view. The view holds a reference to each of its layers,
   * so a layer merged or removed while reads of the current state are in flight
   * (reads do not take the mutex) stays readable until the view that maps blocks
   * to it is replaced.
   */
  #rebuildView(layers: LayerFile[]): void {
    const old = this.#view as ChainView | undefined;
    this.#view = ChainView.build(this.#base, layers, this.virtualSize, this.blockSize, { indexHashes: this.#d.dedup && !this.#readOnly });
    for (const l of layers) l.retain();
    if (old !== undefined) void releaseLayers(old.layers);
  }

  /**
   * Forgets layer `id` and unlinks its file, after a commit that dropped it. Only a
   * file whose header says it is that layer of this disk is unlinked: a dropped
   * leaf is never opened, and a descriptor (damaged, or edited) may name any file
   * of the directory for it; the descriptor itself, a base image or another disk's
   * delta is not ours to delete. Such a file is left where it is.
   */
  async #removeLayerFile(id: string, file: string): Promise<void> {
    await this.#layers.forget(id);
    const p = path.join(this.#paths.dir, file);
    const found = await readHeaders(this.#fs, p);
    if (found === undefined || found.headers.length === 0 || found.headers.some((h) => h.diskId !== this.#d.diskId || h.layerId !== id)) return;
    try {
      await this.#fs.unlink(p);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw fromSystemError(err, p, 'removing layer failed');
    }
    await this.#fs.syncDir(this.#paths.dir).catch((err: unknown) => {
      throw fromSystemError(err, this.#paths.dir, 'syncing directory failed');
    });
  }

  #context(): ChainContext {
    return {
      fs: this.#fs,
      paths: this.#paths,
      layers: this.#layers,
      base: this.#base,
      descriptor: () => this.#d,
      commitDescriptor: (next) => this.#commit(next),
    };
  }
}

/** Unlinks `p`; true when it is gone (or was never there), false when it may still exist. */
async function removedOrAbsent(fs: FileSystem, p: string): Promise<boolean> {
  try {
    await fs.unlink(p);
    await fs.syncDir(path.dirname(p));
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ENOENT';
  }
}

/** Drops a view's references to its layers (the files close when nothing else holds them). */
async function releaseLayers(layers: readonly LayerFile[]): Promise<void> {
  for (const l of layers) await l.release().catch(() => undefined);
}

/** The snapshots of `d`, oldest first, each with its parent in the tree and whether the current state descends from it directly. */
function snapshotList(d: Descriptor, tree: Tree): SnapshotInfo[] {
  const current = tree.nearestSnapshot(d.active, false);
  return d.snapshots
    .map((s) => ({
      id: s.id,
      name: s.name,
      description: s.description,
      created: s.created,
      parent: tree.nearestSnapshot(s.layer, false)?.id ?? null,
      current: current?.id === s.id,
      layer: s.layer,
      bookmark: isBookmark(s),
    }))
    .sort((a, b) => (a.created < b.created ? -1 : a.created > b.created ? 1 : 0));
}
