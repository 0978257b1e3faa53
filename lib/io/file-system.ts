/**
 * The file-system interface every on-disk structure of deltadisk goes through.
 *
 * It is deliberately small: positional reads and writes, fsync, and the directory
 * operations the crash-safety rules need (rename, unlink, link, directory fsync).
 * The real implementation is {@link NodeFileSystem}; tests plug in an in-memory
 * file system, one that simulates power loss and one that injects I/O errors, and
 * run the very same chain and repository code on them.
 *
 * Contract for implementations: methods reject with Node-style errno errors
 * (`err.code === 'ENOENT' | 'EEXIST' | 'EIO' | 'ENOSPC' …`); callers above this
 * layer turn them into DeltaDiskErrors. Paths are absolute.
 */

/** How a file is opened. */
export type OpenMode =
  /** read only; the file must exist */
  | 'read'
  /** read and write; the file must exist */
  | 'readWrite'
  /** read and write; the file must not exist yet (O_CREAT | O_EXCL); never follows a symlink */
  | 'createExclusive';

/** Hints for `open`; an implementation may decline any of them. */
export interface OpenOptions {
  /**
   * Bypass the page cache (O_DIRECT) where the file system supports it; the handle's
   * `direct` says whether it does. A direct handle's transfers must be aligned
   * (`isDirectTransfer` in aligned-buffer.ts) or they fail with EINVAL. What a
   * direct write leaves durable is no different: `datasync` is still the barrier.
   */
  readonly direct?: boolean;
  /**
   * Permission bits of a file this open creates (before the umask; default 0o644).
   * A restore creates its temporary files 0o600 and gives them their mode once
   * written, so a private file is never readable by others on its way in.
   */
  readonly mode?: number;
}

export interface FileStat {
  readonly size: number;
  readonly mode: number;
  readonly mtimeMs: number;
  readonly ino: number;
  readonly dev: number;
  readonly nlink: number;
  readonly isFile: boolean;
  readonly isDirectory: boolean;
  readonly isSymbolicLink: boolean;
}

export interface FileHandle {
  readonly path: string;
  /** Whether transfers bypass the page cache (granted `OpenOptions.direct`); absent means no. */
  readonly direct?: boolean;
  /**
   * Reads up to `length` bytes at `position` into `buffer[offset…]`; resolves with the
   * number of bytes read (less only at end of file). Use `readExactly` for a full read.
   */
  read(buffer: Uint8Array, offset: number, length: number, position: number): Promise<number>;
  /**
   * Reads into `buffers`, back to back, from `position` (one readv); resolves with
   * the total bytes read (less only at end of file).
   */
  readv(buffers: readonly Uint8Array[], position: number): Promise<number>;
  /** Writes all of `buffers`, back to back, starting at `position`. */
  write(buffers: readonly Uint8Array[], position: number): Promise<void>;
  /** Makes the file's data (and the metadata needed to read it, such as its size) durable. */
  datasync(): Promise<void>;
  truncate(length: number): Promise<void>;
  stat(): Promise<FileStat>;
  close(): Promise<void>;
}

export interface FileSystem {
  open(path: string, mode: OpenMode, options?: OpenOptions): Promise<FileHandle>;
  stat(path: string): Promise<FileStat>;
  /** Like stat, but describes a symbolic link itself. */
  lstat(path: string): Promise<FileStat>;
  readdir(path: string): Promise<string[]>;
  /**
   * The names of the regular files in a directory (not directories, links or
   * devices), from the directory itself where it records entry types: no stat of
   * each. Optional: without it, callers stat the names `readdir` gives.
   */
  readdirFiles?(path: string): Promise<string[]>;
  /** Creates one directory (its parent must exist); EEXIST if it does. */
  mkdir(path: string, mode?: number): Promise<void>;
  rename(from: string, to: string): Promise<void>;
  unlink(path: string): Promise<void>;
  rmdir(path: string): Promise<void>;
  /** Creates `newPath` as a hard link to `existing`; EEXIST if `newPath` exists (atomic create). */
  link(existing: string, newPath: string): Promise<void>;
  /** Makes directory entries created, renamed or removed in `path` durable. */
  syncDir(path: string): Promise<void>;
  realpath(path: string): Promise<string>;
}
