/**
 * A file handle that refuses to carry on after a failed fsync.
 *
 * After fsync reports an error the kernel may already have dropped the dirty pages
 * it could not write, so a later fsync can succeed without the data ever reaching
 * the disk (the "fsyncgate" behaviour QEMU and PostgreSQL guard against). Rule 5 of
 * DESIGN: the handle is broken from then on, every write and sync rejects with
 * HANDLE_BROKEN, and only reopening (which runs recovery from what is on disk)
 * brings the file back. A failed write breaks the handle too: what reached the
 * file is unknown.
 *
 * A sync with nothing written or truncated through this handle since its last
 * successful sync returns at once: a layer's header update, for one, syncs before
 * writing the header so that the records it vouches for are durable, and after a
 * copy that was just synced there is nothing left to sync (on this machine each
 * such fdatasync still cost a device flush, 0.5-5 ms). The first sync after opening
 * always runs: the file may hold another process's unsynced writes.
 */
import { DeltaDiskError, fromSystemError } from '../errors.js';
import type { FileHandle, FileStat } from './file-system.js';

export class GuardedHandle implements FileHandle {
  readonly #inner: FileHandle;
  #broken: DeltaDiskError | undefined;
  /** Writes and truncations started through this handle, and those not yet finished. */
  #changes = 0;
  #inFlight = 0;
  /** `#changes` as of the start of the last successful sync that found none in flight; -1 before. */
  #synced = -1;

  constructor(inner: FileHandle) {
    this.#inner = inner;
  }

  get path(): string {
    return this.#inner.path;
  }

  get broken(): boolean {
    return this.#broken !== undefined;
  }

  read(buffer: Uint8Array, offset: number, length: number, position: number): Promise<number> {
    return this.#inner.read(buffer, offset, length, position);
  }

  readv(buffers: readonly Uint8Array[], position: number): Promise<number> {
    return this.#inner.readv(buffers, position);
  }

  async write(buffers: readonly Uint8Array[], position: number): Promise<void> {
    this.#assertUsable();
    this.#changes++;
    this.#inFlight++;
    try {
      await this.#inner.write(buffers, position);
    } catch (err) {
      throw this.#break(err, 'write failed');
    } finally {
      this.#inFlight--;
    }
  }

  /**
   * Writes through `other`, a second handle on the same file (opened for direct
   * I/O), as if through this one: counted, so that `datasync` syncs it, and a failure
   * breaks this handle. Except EINVAL, the file system refusing a direct write's
   * alignment: that returns false, this handle stays usable, and the caller writes
   * the same range again another way (a write cut in 4 MiB calls may have landed in
   * part).
   */
  async writeThrough(other: FileHandle, buffers: readonly Uint8Array[], position: number): Promise<boolean> {
    this.#assertUsable();
    this.#changes++;
    this.#inFlight++;
    try {
      await other.write(buffers, position);
      return true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EINVAL') return false;
      throw this.#break(err, 'write failed');
    } finally {
      this.#inFlight--;
    }
  }

  async datasync(): Promise<void> {
    this.#assertUsable();
    const changes = this.#changes;
    // Every change counted has finished only when none is in flight: only then does
    // this sync cover them all.
    const covers = this.#inFlight === 0;
    if (covers && changes === this.#synced) return;
    try {
      await this.#inner.datasync();
    } catch (err) {
      throw this.#break(err, 'fsync failed');
    }
    if (covers) this.#synced = Math.max(this.#synced, changes);
  }

  async truncate(length: number): Promise<void> {
    this.#assertUsable();
    this.#changes++;
    this.#inFlight++;
    try {
      await this.#inner.truncate(length);
    } catch (err) {
      throw this.#break(err, 'truncate failed');
    } finally {
      this.#inFlight--;
    }
  }

  /** A failed stat is an IO_ERROR but does not break the handle: nothing was written. */
  async stat(): Promise<FileStat> {
    try {
      return await this.#inner.stat();
    } catch (err) {
      throw fromSystemError(err, this.path, 'stat failed');
    }
  }

  close(): Promise<void> {
    return this.#inner.close();
  }

  #assertUsable(): void {
    if (this.#broken !== undefined) {
      throw new DeltaDiskError(
        'HANDLE_BROKEN',
        `${this.path}: an earlier write or fsync failed; reopen the disk to recover`,
        { path: this.path, cause: this.#broken },
      );
    }
  }

  #break(err: unknown, what: string): DeltaDiskError {
    const e = fromSystemError(err, this.path, what);
    this.#broken = e;
    return e;
  }
}
