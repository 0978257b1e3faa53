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
 */
import { DeltaDiskError, fromSystemError } from '../errors.js';
import type { FileHandle, FileStat } from './file-system.js';

export class GuardedHandle implements FileHandle {
  readonly #inner: FileHandle;
  #broken: DeltaDiskError | undefined;

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
    try {
      await this.#inner.write(buffers, position);
    } catch (err) {
      throw this.#break(err, 'write failed');
    }
  }

  async datasync(): Promise<void> {
    this.#assertUsable();
    try {
      await this.#inner.datasync();
    } catch (err) {
      throw this.#break(err, 'fsync failed');
    }
  }

  async truncate(length: number): Promise<void> {
    this.#assertUsable();
    try {
      await this.#inner.truncate(length);
    } catch (err) {
      throw this.#break(err, 'truncate failed');
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
