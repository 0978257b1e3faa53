/**
 * Where a repository's files live: the storage-backend interface.
 *
 * The repository sees a few kinds of whole files, each written once under a name
 * (content-addressed or random) and later possibly deleted, never modified in place.
 * That is all an object store offers, so an S3-compatible backend can follow the
 * local directory one. Contract for every implementation:
 *  - `write` is atomic and durable when it resolves: after a crash the file is either
 *    absent or complete. `create` refuses an existing name (ALREADY_EXISTS);
 *    `replace` swaps it atomically.
 *  - `remove` is durable when it resolves and reports whether the file existed.
 *  - `stage` + `commit` split a write for throughput: `stage` hands the bytes over
 *    without waiting for them to reach the disk, `commit` makes a batch of staged
 *    files appear under their names, atomically and durably. A staged file that is
 *    never committed is a temporary file (invisible to `list`, removed by prune).
 *  - `list` and `listNames` never show a file that is still being written.
 *  - reads reject with NOT_FOUND for a missing file, TRUNCATED for a short one.
 */
import { HEX32, HEX64 } from '../format/framed.js';

export type RepoFileKind = 'pack' | 'index' | 'snapshot' | 'lock' | 'plan' | 'verify' | 'damage';

export const REPO_FILE_KINDS: readonly RepoFileKind[] = ['pack', 'index', 'snapshot', 'lock', 'plan', 'verify', 'damage'];

export interface StoredFile {
  readonly name: string;
  readonly size: number;
}

/** A staged write (opaque to callers). */
export interface StagedFile {
  readonly kind: RepoFileKind;
  readonly name: string;
}

/** Bytes in a buffer lent from a pool: `release` once done with them, and not before. */
export interface LeasedBytes {
  readonly bytes: Buffer;
  release(): void;
}

/**
 * A file written in pieces while its content grows (a pack while it fills), staged
 * under its name only once complete: invisible to `list` until committed, and a
 * temporary file (removed by prune) if never finished.
 */
export interface GrowingFile {
  /** Writes a piece at `offset`; pieces never overlap, and may be written together. */
  write(data: Uint8Array, offset: number): Promise<void>;
  /** Once every piece has been written: writes `rest` from `offset` and stages the whole as `name` (then `commit`). */
  finish(name: string, rest: readonly Uint8Array[], offset: number): Promise<StagedFile>;
  /** Drops the file (after a failure, or when it is not needed). */
  discard(): Promise<void>;
}

export interface StorageBackend {
  /** Human-readable location (a directory path, a URL). */
  readonly location: string;
  /** Creates the empty layout (no config yet). */
  init(): Promise<void>;
  /** The config file, or undefined when there is none. */
  readConfig(maxBytes: number): Promise<Buffer | undefined>;
  /** Writes the config; the commit point of `init`. @throws ALREADY_EXISTS */
  createConfig(bytes: Uint8Array): Promise<void>;
  list(kind: RepoFileKind): Promise<StoredFile[]>;
  /**
   * The names `list` would show, in the same order, without their sizes: where the
   * directory records its entries' types, no file is looked at, so it costs one
   * directory read however many files there are (a backup lists every manifest and
   * index file). A file removed since may still be named; reading it then fails
   * with NOT_FOUND. With `anyType`, names held by anything (a link, a directory)
   * too, still from one directory read: for records whose presence is the mark.
   */
  listNames(kind: RepoFileKind, options?: { readonly anyType?: boolean }): Promise<string[]>;
  /**
   * Names of `kind` held by something other than a regular file (a symbolic link, a
   * directory): never written by a repository, so damage. `list` and `listNames`
   * leave them out, so without this a manifest replaced by a link would be a backup
   * that check never mentions and prune treats as gone, deleting its data.
   */
  listIrregular(kind: RepoFileKind): Promise<string[]>;
  /** Leftover temporary files, as `<kind>/<name>` strings for `removeTemp`. */
  listTemps(): Promise<string[]>;
  removeTemp(name: string): Promise<void>;
  /** A whole file of at most `maxBytes`. @throws NOT_FOUND, LIMIT_EXCEEDED */
  read(kind: RepoFileKind, name: string, maxBytes: number): Promise<Buffer>;
  readRange(kind: RepoFileKind, name: string, offset: number, length: number): Promise<Buffer>;
  /**
   * Like `readRange`, into a pooled buffer and past the page cache (for data read
   * once, such as a restore's packs), where the backend can; undefined where it
   * cannot, and the caller then uses `readRange`.
   */
  readRangeDirect?(kind: RepoFileKind, name: string, offset: number, length: number): Promise<LeasedBytes | undefined>;
  /** File size, or undefined when no regular file of that name exists. */
  size(kind: RepoFileKind, name: string): Promise<number | undefined>;
  write(kind: RepoFileKind, name: string, data: readonly Uint8Array[], mode: 'create' | 'replace'): Promise<void>;
  /** Writes a file that appears (replacing any file of that name) only once committed. */
  stage(kind: RepoFileKind, name: string, data: readonly Uint8Array[]): Promise<StagedFile>;
  /**
   * Starts a file of `kind` whose name is known only once it is complete (see
   * GrowingFile), where the backend can; the caller uses `stage` otherwise.
   */
  growing?(kind: RepoFileKind): Promise<GrowingFile>;
  /** Makes staged files durable and visible under their names. */
  commit(files: readonly StagedFile[]): Promise<void>;
  /** Drops staged files. */
  discard(files: readonly StagedFile[]): Promise<void>;
  remove(kind: RepoFileKind, name: string): Promise<boolean>;
  /** Releases cached handles. */
  close(): Promise<void>;
}

/**
 * A range of a file as a lease: past the page cache where the backend can
 * (`readRangeDirect`), else an ordinary read whose release does nothing. For data
 * read once, by a reader that is done with it before it releases it.
 */
export async function readLeased(backend: StorageBackend, kind: RepoFileKind, name: string, offset: number, length: number): Promise<LeasedBytes> {
  return (await backend.readRangeDirect?.(kind, name, offset, length)) ?? { bytes: await backend.readRange(kind, name, offset, length), release: keep };
}

const keep = (): void => undefined;

/** Whether `name` is a valid name for a file of `kind`. */
export function isValidRepoName(kind: RepoFileKind, name: string): boolean {
  switch (kind) {
    case 'pack':
    case 'index':
    case 'damage':
      return HEX64.test(name);
    case 'snapshot':
    case 'lock':
    case 'verify':
      return HEX32.test(name);
    case 'plan':
      return name === 'prune';
  }
}
