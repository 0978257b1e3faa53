/**
 * Writing a new file front to back (holes allowed), bypassing the page cache where
 * the file system allows: what a restore does with every large file it writes.
 *
 * Why: written through the page cache, each page must be allocated first, and on a
 * VM whose free memory went back to the host that allocation is most of a write's
 * cost. Measured on our CI machine: 1 GiB written in 4 MiB calls and fdatasync'ed
 * took 3.3-3.5 s (3.6-4.0 s of it in the kernel) through the page cache and
 * 0.7-0.8 s directly. Restoring a disk also has no use for its data in the cache.
 *
 * How: the caller's data is copied into page-aligned staging buffers (a restore's
 * chunks sit at arbitrary offsets of the buffers they were read into, so they cannot
 * be written from there), and each buffer is written with O_DIRECT when full, a few
 * at once. The staged range always starts on a page; a page is written only once:
 *  - a run of data that ends inside a page is written with the rest of that page
 *    zeroed, but only when the next data starts in a later page (the zeros are then
 *    part of a hole, which reads zeros anyway), or at the end, when `finish` cuts
 *    the file to its size;
 *  - data that resumes in the page where the last run ended continues the staged
 *    range, the few bytes between filled with zeros.
 * Holes of a page or more stay holes. Where O_DIRECT is refused, at the open or at
 * a write (EINVAL), the writer carries on through an ordinary handle, and a small
 * file is never staged at all: only speed depends on direct I/O.
 *
 * Through the page cache, the writer starts an fdatasync every SYNC_BEHIND bytes
 * without waiting for it, so the device writes back while the caller goes on instead
 * of all at once in `finish`. Direct writes are not synced behind: their data is
 * already on its way to the device, and each sync only adds a cache flush the writes
 * queue behind (a 1 GiB restore here took 4.9-5.5 s with them, 4.2-5.2 s without,
 * 5 of 6 interleaved pairs faster).
 */
import { alignDown, alignUp } from './aligned-buffer.js';
import { alignedPool } from './buffer-pool.js';
import type { FileHandle, FileSystem } from './file-system.js';

/** One staging buffer: a direct write of at most this much. */
const STAGE_BYTES = 4 * 1024 * 1024;
/** Staging buffers being written, per file. */
const WRITES_IN_FLIGHT = 4;
/** Files smaller than this are written through the page cache. */
export const MIN_DIRECT_FILE_BYTES = 1024 * 1024;
/** Written through the page cache, a datasync is started after this many bytes. */
const SYNC_BEHIND = 64 * 1024 * 1024;

const takeStage = (): Buffer => alignedPool.acquire(STAGE_BYTES);
const giveStage = (b: Buffer): void => alignedPool.release(b);


export class SequentialWriter {
  readonly path: string;
  readonly #fs: FileSystem;
  readonly #handle: FileHandle;
  /** An ordinary handle: `#handle` itself unless it is direct (then opened once, when needed). */
  #plain: Promise<FileHandle> | undefined;
  #direct: boolean;
  /** The staging buffer, its file offset (page-aligned), and the bytes staged. */
  #stage: Buffer | undefined;
  #base = 0;
  #fill = 0;
  /** The end of the last data written (offsets only grow). */
  #end = 0;
  readonly #writes: Promise<void>[] = [];
  /** Bytes written through the page cache since the last sync-behind started, and that sync. */
  #unsynced = 0;
  #syncing: Promise<void> | undefined;
  #syncError: { err: unknown } | undefined;

  private constructor(fs: FileSystem, path: string, handle: FileHandle) {
    this.#fs = fs;
    this.path = path;
    this.#handle = handle;
    this.#direct = handle.direct === true;
    this.#plain = this.#direct ? undefined : Promise.resolve(handle);
  }

  /**
   * Creates `path` (O_EXCL, no symlink followed; permission bits `mode`, default
   * 0o644) for a content of `size` bytes; a content of {@link MIN_DIRECT_FILE_BYTES}
   * or more is written directly where it can be.
   */
  static async create(fs: FileSystem, path: string, size: number, mode?: number): Promise<SequentialWriter> {
    const handle = await fs.open(path, 'createExclusive', { direct: size >= MIN_DIRECT_FILE_BYTES, ...(mode === undefined ? {} : { mode }) });
    return new SequentialWriter(fs, path, handle);
  }

  /** Whether data goes to the device without the page cache (so far). */
  get direct(): boolean {
    return this.#direct;
  }

  /**
   * Writes `data` at `offset`, at or after the end of what was written before (what
   * lies between reads zeros). Resolves when `data` may be reused (copied, or, through
   * the page cache, written); at most a few staging buffers are being written.
   */
  async write(data: Uint8Array, offset: number): Promise<void> {
    if (offset < this.#end) throw new Error(`internal: sequential write at ${offset} before the end ${this.#end}`);
    this.#end = offset + data.length;
    if (!this.#direct) {
      if (this.#stage !== undefined) await this.#flushStage(false);
      return this.#plainWrite(data, offset);
    }
    if (this.#stage !== undefined && alignDown(offset) > alignDown(this.#base + this.#fill)) await this.#flushStage(true);
    if (this.#stage === undefined) {
      this.#stage = takeStage();
      this.#base = alignDown(offset);
      this.#fill = 0;
    }
    // Zeros between the staged end and `offset` (both in the same page, or a new stage).
    const at = offset - this.#base;
    if (at > this.#fill) this.#stage.fill(0, this.#fill, at);
    this.#fill = at;
    let done = 0;
    while (done < data.length) {
      const n = Math.min(data.length - done, STAGE_BYTES - this.#fill);
      this.#stage!.set(data.subarray(done, done + n), this.#fill);
      this.#fill += n;
      done += n;
      if (this.#fill === STAGE_BYTES) {
        await this.#flushStage(false);
        if (!this.#direct) return this.#plainWrite(data.subarray(done), offset + done);
        this.#stage = takeStage();
        this.#base += STAGE_BYTES;
        this.#fill = 0;
      }
    }
  }

  /** Writes what is staged, sets the file's size to `size` and makes it durable. */
  async finish(size: number): Promise<void> {
    if (this.#stage !== undefined) await this.#flushStage(true);
    // Every write has ended before this goes on (or throws), so none outlives close().
    const failed = (await Promise.allSettled(this.#writes.splice(0))).find((r) => r.status === 'rejected');
    if (failed !== undefined) throw failed.reason;
    await this.#syncing;
    if (this.#syncError !== undefined) throw this.#syncError.err;
    await this.#handle.truncate(size);
    await this.#handle.datasync();
  }

  /** Closes the file (after `finish`, or to give up). */
  async close(): Promise<void> {
    await Promise.allSettled([...this.#writes.splice(0), this.#syncing]);
    const plain = await this.#plain?.catch(() => undefined);
    if (plain !== undefined && plain !== this.#handle) await plain.close();
    await this.#handle.close();
  }

  /** The ordinary handle, opened on first use (once, however many writes ask at once). */
  #plainHandle(): Promise<FileHandle> {
    return (this.#plain ??= this.#fs.open(this.path, 'readWrite'));
  }

  async #plainWrite(data: Uint8Array, offset: number): Promise<void> {
    if (data.length === 0) return;
    await (await this.#plainHandle()).write([data], offset);
    this.#syncBehind(data.length);
  }

  /** Counts `n` bytes written through the page cache; starts a datasync when enough are. */
  #syncBehind(n: number): void {
    this.#unsynced += n;
    if (this.#unsynced < SYNC_BEHIND || this.#syncing !== undefined) return;
    this.#unsynced = 0;
    // A failure is kept for finish to throw: a sync that failed may have dropped the
    // dirty pages it could not write, and a later sync would then succeed.
    this.#syncing = this.#plainHandle()
      .then((h) => h.datasync())
      .catch((err: unknown) => {
        this.#syncError ??= { err };
      })
      .finally(() => {
        this.#syncing = undefined;
      });
  }

  /**
   * Writes the staged range: directly with its last page zero-padded (`pad`: the
   * data goes on in a later page, or ends) or as it is (a full stage); through the
   * page cache as it is once direct writes were refused.
   */
  async #flushStage(pad: boolean): Promise<void> {
    const stage = this.#stage!;
    const base = this.#base;
    const fill = this.#fill;
    this.#stage = undefined;
    if (!this.#direct) {
      const plain = await this.#plainHandle();
      this.#syncBehind(fill);
      return this.#queue(plain.write([stage.subarray(0, fill)], base).then(() => giveStage(stage)));
    }
    const length = pad ? alignUp(fill) : fill;
    if (length > fill) stage.fill(0, fill, length);
    const write = this.#handle.write([stage.subarray(0, length)], base).then(
      () => giveStage(stage),
      async (err: unknown) => {
        if ((err as NodeJS.ErrnoException).code !== 'EINVAL') throw err;
        // Refused (an alignment stricter than a page): this and all that follows
        // go through the page cache.
        this.#direct = false;
        await (await this.#plainHandle()).write([stage.subarray(0, fill)], base);
        this.#syncBehind(fill);
        giveStage(stage);
      },
    );
    await this.#queue(write);
  }

  async #queue(write: Promise<void>): Promise<void> {
    write.catch(() => undefined);
    this.#writes.push(write);
    if (this.#writes.length >= WRITES_IN_FLIGHT) await this.#writes.shift();
  }
}
