/**
 * Writes new blobs into packs, and the index files that list those packs.
 *
 * Blobs are copied into the open pack's arena (a buffer of the pack size, reused
 * from pack to pack); a full pack is sealed (header and trailer appended, named by
 * their hash) and staged through the backend while the caller goes on. At most two
 * packs are being staged, so memory is a fixed three arenas whatever the amount of
 * data, no buffer of the caller is kept (it may reuse its read buffers at once), and
 * nothing is left for the garbage collector. Arenas are page-aligned (from
 * `alignedPool`, and back to it after a flush), so a pack's data goes to the device
 * straight from its arena (direct I/O, `writeNewFile`; its last partial page and
 * its tail, or all of it where the file system has no direct I/O, through the page
 * cache). While a pack fills, its filled pages are written ahead, a piece at a time,
 * into a file the backend names once the pack is sealed (`growing`), so sealing
 * writes only the rest. Every blob is entered in the in-memory index the moment it
 * is added, so a second copy in the same run is deduplicated too.
 *
 * Staged packs are committed (fsync'ed, then renamed into place) all together by
 * `flush`, none before. Committing earlier made nothing safer (no index names a pack
 * before the flush, so a crash leaves the staged and the committed ones alike
 * unreferenced, for prune) and cost time: each fsync asks the device to flush its
 * cache, and the pack writes queued behind that flush wait for it. Committing two
 * packs at a time, four behind, a 1 GiB backup took 4.8-6.7 s here against
 * 3.8-4.5 s (5 of 5 interleaved pairs faster), and 4 GiB 18.4-20.2 s against
 * 14.0-16.1 s; committing everything each gigabyte, 17.9-18.8 s. The data is not
 * held back meanwhile: written directly it is on its way to the device already, and
 * through the page cache the kernel writes it back in its own time.
 *
 * `flush` is the barrier of the write order: it returns only once every pack is
 * committed (durable under its name) and then writes the index files naming them,
 * durably. Only after that may a manifest reference the blobs.
 */
import { createHash } from 'node:crypto';
import { DeltaDiskError } from '../errors.js';
import { alignDown } from '../io/aligned-buffer.js';
import { alignedPool } from '../io/buffer-pool.js';
import { encodeIndexFile, indexNameOf, type IndexedPack } from '../format/index-file.js';
import { BlobKind, Compression, encodePackTail, packNameOf } from '../format/pack-header.js';
import { INDEX_PACKS_PER_FILE, MAX_BLOB_SIZE, MAX_PACK_BLOBS } from '../format/repo-limits.js';
import type { GrowingFile, StagedFile, StorageBackend, StoredFile } from './backend.js';
import type { ChunkIndex } from './chunk-index.js';
import { compressChunk } from './compression.js';

const MAX_IN_FLIGHT = 2;
/** Pieces written ahead hold a quarter of a pack, within these bounds. */
const PIECE_MIN = 64 * 1024;
const PIECE_MAX = 4 * 1024 * 1024;

export interface PackWriterStats {
  /** Blobs added (new to the repository). */
  blobs: number;
  /** Raw bytes of new blobs. */
  rawBytes: number;
  /** Bytes stored for them (after compression). */
  storedBytes: number;
  packs: number;
  /** Bytes of pack files written (blobs, headers, trailers). */
  packBytes: number;
  indexFiles: number;
}

interface OpenPack {
  readonly id: number;
  /** Where the blobs are copied (empty in a dry run). */
  readonly arena: Buffer;
  readonly blobs: { hash: Buffer; storedLength: number; rawLength: number; kind: BlobKind; compression: Compression }[];
  size: number;
  /** The file it is written into while it fills (when the backend can), and the pieces written so far. */
  file?: Promise<GrowingFile>;
  written: number;
  /** The pieces' writes (rejecting once one failed). */
  writing: Promise<void>;
}

export interface PackWriterOptions {
  readonly packSize: number;
  /** Compress blobs where it saves space (default true). */
  readonly compress?: boolean;
  /** Account for everything, write nothing. */
  readonly dryRun?: boolean;
}

export function sha256(data: Uint8Array): Buffer {
  return createHash('sha256').update(data).digest();
}

export class PackWriter {
  readonly stats: PackWriterStats = { blobs: 0, rawBytes: 0, storedBytes: 0, packs: 0, packBytes: 0, indexFiles: 0 };
  readonly #backend: StorageBackend;
  readonly #index: ChunkIndex;
  readonly #options: PackWriterOptions;
  #open: OpenPack | undefined;
  readonly #inFlight: Promise<void>[] = [];
  /** Sealed packs written under temporary names, committed by the next flush. */
  readonly #staged: StagedFile[] = [];
  readonly #written: IndexedPack[] = [];
  readonly #indexFiles: StoredFile[] = [];
  #failed: unknown;
  readonly #arenas: Buffer[] = [];
  readonly #arenaSize: number;
  /** The least a piece of the open pack written ahead holds (see #writeAhead). */
  readonly #piece: number;
  /** Adds under way, and the flush that waits for them to finish (see #adding). */
  #adds = 0;
  #idle: (() => void) | undefined;
  #flushing: Promise<void> | undefined;

  constructor(backend: StorageBackend, index: ChunkIndex, options: PackWriterOptions) {
    this.#backend = backend;
    this.#index = index;
    this.#options = options;
    this.#arenaSize = Math.max(options.packSize, MAX_BLOB_SIZE);
    this.#piece = Math.max(PIECE_MIN, Math.min(PIECE_MAX, alignDown(Math.floor(options.packSize / 4))));
  }

  get index(): ChunkIndex {
    return this.#index;
  }

  /** Index files written so far (by `flush`). */
  get indexFilesWritten(): readonly StoredFile[] {
    return this.#indexFiles;
  }

  /** Packs written so far (their index files are written by `flush`). */
  get writtenPacks(): readonly IndexedPack[] {
    return this.#written;
  }

  /**
   * Stores `data` under `hash` unless a usable copy exists already.
   * @returns true when the blob is new
   */
  async add(hash: Buffer, data: Buffer, kind: BlobKind = BlobKind.DATA): Promise<boolean> {
    this.#assertHealthy();
    if (this.#index.findUsable(hash) >= 0) return false;
    if (data.length === 0 || data.length > MAX_BLOB_SIZE) throw new DeltaDiskError('INVALID_ARGUMENT', `a blob is 1 to ${MAX_BLOB_SIZE} bytes, not ${data.length}`);
    return this.#adding(async () => {
      const { stored, compression } = this.#options.compress === false ? { stored: data, compression: Compression.NONE } : await compressChunk(data, kind === BlobKind.LIST ? 'runs' : 'any');
      // Another add of the same hash may have completed while compressing.
      if (this.#index.findUsable(hash) >= 0) return false;
      await this.#append(hash, stored, data.length, kind, compression);
      return true;
    });
  }

  /**
   * Copies a stored blob as it is (no dedup check, no recompression): for prune,
   * which rewrites the chunks still in use out of mostly unused packs.
   */
  async copy(hash: Buffer, stored: Buffer, rawLength: number, kind: BlobKind, compression: Compression): Promise<void> {
    this.#assertHealthy();
    await this.#adding(() => this.#append(hash, stored, rawLength, kind, compression));
  }

  /**
   * Runs one add. Adds may run together (disks of a VM read at once), but never
   * beside a flush: a pack sealed while a flush waits on the device could be named
   * by its index file before the pack itself is durable.
   */
  async #adding<T>(fn: () => Promise<T>): Promise<T> {
    while (this.#flushing !== undefined) await this.#flushing.catch(() => undefined);
    this.#adds++;
    try {
      return await fn();
    } finally {
      if (--this.#adds === 0) this.#idle?.();
    }
  }

  async #append(hash: Buffer, stored: Buffer, rawLength: number, kind: BlobKind, compression: Compression): Promise<void> {
    if (this.#open !== undefined && this.#open.size + stored.length > this.#arenaSize) await this.#seal();
    const pack = this.#open ?? (this.#open = { id: this.#index.beginPack(), arena: this.#options.dryRun ? Buffer.alloc(0) : this.#arena(), blobs: [], size: 0, written: 0, writing: Promise.resolve() });
    this.#index.addPendingEntry(pack.id, hash, pack.size, stored.length, rawLength, kind, compression);
    pack.blobs.push({ hash: Buffer.from(hash), storedLength: stored.length, rawLength, kind, compression });
    if (!this.#options.dryRun) stored.copy(pack.arena, pack.size);
    pack.size += stored.length;
    this.stats.blobs++;
    this.stats.rawBytes += rawLength;
    this.stats.storedBytes += stored.length;
    if (pack.size >= this.#options.packSize || pack.blobs.length >= MAX_PACK_BLOBS) await this.#seal();
    else this.#writeAhead(pack);
  }

  /**
   * Writes the filled part of the open pack while it fills, a piece of at least
   * #piece bytes at a time (whole pages, straight from the arena), so sealing it
   * writes only what came last: an incremental backup's one pack of 10 MiB was
   * written all at once by its flush, ~8 ms the backup waited for, while the main
   * thread had spent the time before hashing and the device had idled.
   */
  #writeAhead(pack: OpenPack): void {
    const upTo = alignDown(pack.size);
    if (this.#options.dryRun || this.#backend.growing === undefined || upTo - pack.written < this.#piece) return;
    if (pack.file === undefined) {
      pack.file = this.#backend.growing('pack');
      // Awaited by the pieces, #seal and abort; a failure must not go unhandled before.
      pack.file.catch(() => undefined);
    }
    const file = pack.file;
    const from = pack.written;
    pack.written = upTo;
    const piece = pack.writing.then(async () => (await file).write(pack.arena.subarray(from, upTo), from));
    // Every piece is awaited by #seal (or abort); a failure must not go unhandled meanwhile.
    piece.catch(() => undefined);
    pack.writing = piece;
  }

  #arena(): Buffer {
    return this.#arenas.pop() ?? alignedPool.acquire(this.#arenaSize);
  }

  /**
   * Seals the open pack, waits until every pack is durable, then writes (durably)
   * index files naming the packs written since the last flush.
   */
  async flush(): Promise<void> {
    while (this.#flushing !== undefined) await this.#flushing.catch(() => undefined);
    const run = this.#flush();
    this.#flushing = run;
    try {
      await run;
    } finally {
      this.#flushing = undefined;
    }
  }

  async #flush(): Promise<void> {
    // Adds under way finish first; new ones wait for this flush (see #adding).
    while (this.#adds > 0) await new Promise<void>((resolve) => (this.#idle = resolve));
    this.#idle = undefined;
    this.#assertHealthy();
    await this.#seal();
    await Promise.all(this.#inFlight.splice(0));
    this.#assertHealthy();
    // Every arena is idle now: they go back to the process's pool, already mapped,
    // for whatever comes next (the next pack, or a merge's direct append of up to
    // an arena's size, such as the older anchor's after an incremental backup).
    for (const arena of this.#arenas.splice(0)) alignedPool.release(arena);
    if (!this.#options.dryRun) await this.#backend.commit(this.#staged.splice(0));
    const packs = this.#written.splice(0);
    for (let i = 0; i < packs.length; i += INDEX_PACKS_PER_FILE) {
      const bytes = encodeIndexFile(packs.slice(i, i + INDEX_PACKS_PER_FILE));
      const name = indexNameOf(bytes);
      if (!this.#options.dryRun) {
        await this.#backend.write('index', name, [bytes], 'replace');
        this.#indexFiles.push({ name, size: bytes.length });
      }
      this.stats.indexFiles++;
    }
  }

  /** Gives up: waits for packs in flight (they become unreferenced leftovers) and drops the open one. */
  async abort(): Promise<void> {
    const open = this.#open;
    if (open !== undefined) this.#index.abandonPack(open.id);
    this.#open = undefined;
    if (open?.file !== undefined) {
      await open.writing.catch(() => undefined);
      await open.file.then((f) => f.discard(), () => undefined);
    }
    await Promise.allSettled(this.#inFlight.splice(0));
    await this.#backend.discard(this.#staged.splice(0)).catch(() => undefined);
  }

  async #seal(): Promise<void> {
    const pack = this.#open;
    if (pack === undefined) return;
    this.#open = undefined;
    const tail = encodePackTail(pack.blobs);
    const name = packNameOf(tail);
    const size = pack.size + tail.length;
    this.#index.finishPack(pack.id, name, size);
    this.#written.push({ name, size, tail });
    this.stats.packs++;
    this.stats.packBytes += size;
    if (this.#options.dryRun) return;
    const put = this.#stage(pack, name, tail).then(
      (staged) => {
        this.#staged.push(staged);
        this.#arenas.push(pack.arena);
      },
      (err: unknown) => {
        this.#failed ??= err;
      },
    );
    this.#inFlight.push(put);
    while (this.#inFlight.length >= MAX_IN_FLIGHT) await this.#inFlight.shift();
    this.#assertHealthy();
  }

  /** Stages a sealed pack: the rest of a growing file, or the whole through `stage`. */
  async #stage(pack: OpenPack, name: string, tail: Buffer): Promise<StagedFile> {
    if (pack.file === undefined) return this.#backend.stage('pack', name, [pack.arena.subarray(0, pack.size), tail]);
    const file = pack.file;
    try {
      await pack.writing;
      return await (await file).finish(name, [pack.arena.subarray(pack.written, pack.size), tail], pack.written);
    } catch (err) {
      await file.then((f) => f.discard(), () => undefined);
      throw err;
    }
  }

  #assertHealthy(): void {
    if (this.#failed !== undefined) throw this.#failed;
  }
}
