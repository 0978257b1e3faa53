/**
 * The one error class of deltadisk.
 *
 * Every failure the library reports on purpose is a `DeltaDiskError` whose `code`
 * is one of {@link ErrorCode}. Callers branch on `code`, never on `message`; the
 * structured fields (`path`, `offset`, `block`, `layer`) say where it happened.
 * Each code is documented in docs/ERRORS.md, and a test pins the two together.
 */

export const ERROR_CODES = [
  // Caller mistakes
  'INVALID_ARGUMENT',
  'OUT_OF_RANGE',
  'NOT_OPEN',
  'READ_ONLY',
  'ALREADY_EXISTS',
  'NOT_FOUND',
  'SNAPSHOT_NOT_FOUND',
  'SNAPSHOT_EXISTS',
  // Concurrency
  'LOCKED',
  'LOCK_INVALID',
  'LOCK_LOST',
  // Damaged or hostile input
  'CHAIN_CORRUPT',
  'CHECKSUM_MISMATCH',
  'TRUNCATED',
  'SHORT_READ',
  'UNSUPPORTED_VERSION',
  'LIMIT_EXCEEDED',
  'UNSAFE_PATH',
  'BASE_MODIFIED',
  'STATE_MISMATCH',
  // The environment
  'IO_ERROR',
  'NO_SPACE',
  'HANDLE_BROKEN',
  'INTERRUPTED',
  'TIMEOUT',
  'UNSUPPORTED',
  // Backup repository
  'REPO_NOT_FOUND',
  'REPO_CORRUPT',
  'BACKUP_NOT_FOUND',
  // VM directories and hooks
  'VM_INVALID',
  'HOOK_FAILED',
  // Network block device
  'PROTOCOL_ERROR',
] as const;

export type ErrorCode = (typeof ERROR_CODES)[number];

export interface ErrorDetails {
  /** The file the error is about. */
  readonly path?: string | undefined;
  /** A byte offset: into the virtual disk for I/O arguments, into `path` for damage. */
  readonly offset?: number | undefined;
  /** A block index of the virtual disk. */
  readonly block?: number | undefined;
  /** The layer id the error is about. */
  readonly layer?: string | undefined;
  /** For LOCKED: who holds the lock. */
  readonly holder?: unknown;
  /** The lower-level error that caused this one. */
  readonly cause?: unknown;
}

export class DeltaDiskError extends Error {
  override readonly name = 'DeltaDiskError';
  readonly code: ErrorCode;
  readonly path: string | undefined;
  readonly offset: number | undefined;
  readonly block: number | undefined;
  readonly layer: string | undefined;
  readonly holder: unknown;

  constructor(code: ErrorCode, message: string, details: ErrorDetails = {}) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause });
    this.code = code;
    this.path = details.path;
    this.offset = details.offset;
    this.block = details.block;
    this.layer = details.layer;
    this.holder = details.holder;
  }

  /** A plain object for `--json` output and logs. */
  toJSON(): Record<string, unknown> {
    const out: Record<string, unknown> = { code: this.code, message: this.message };
    if (this.path !== undefined) out.path = this.path;
    if (this.offset !== undefined) out.offset = this.offset;
    if (this.block !== undefined) out.block = this.block;
    if (this.layer !== undefined) out.layer = this.layer;
    if (this.holder !== undefined) out.holder = this.holder;
    return out;
  }
}

/**
 * Throws INTERRUPTED (`message`) once `signal` is aborted: long operations call it
 * between their steps, so an abort (SIGINT in the CLI) ends them at the next one.
 */
export function throwIfAborted(signal: AbortSignal | undefined, message: string, details: ErrorDetails = {}): void {
  if (signal?.aborted === true) throw new DeltaDiskError('INTERRUPTED', message, details);
}

export function isDeltaDiskError(err: unknown, code?: ErrorCode): err is DeltaDiskError {
  return err instanceof DeltaDiskError && (code === undefined || err.code === code);
}

/**
 * Turns an error thrown by the operating system (an `errno` error from node:fs) into a
 * DeltaDiskError: ENOSPC and EDQUOT become NO_SPACE, ENOENT NOT_FOUND, everything else
 * IO_ERROR. A DeltaDiskError passes through unchanged.
 */
export function fromSystemError(err: unknown, path?: string, what = 'I/O failed'): DeltaDiskError {
  if (err instanceof DeltaDiskError) return err;
  const sys = err as NodeJS.ErrnoException | undefined;
  const errno = typeof sys?.code === 'string' ? sys.code : undefined;
  const detail = errno === undefined ? String((err as Error | undefined)?.message ?? err) : errno;
  const where = path === undefined ? '' : ` (${path})`;
  if (errno === 'ENOSPC' || errno === 'EDQUOT') {
    return new DeltaDiskError('NO_SPACE', `${what}: no space left on device${where}`, { path, cause: err });
  }
  if (errno === 'ENOENT') {
    return new DeltaDiskError('NOT_FOUND', `${what}: no such file${where}`, { path, cause: err });
  }
  return new DeltaDiskError('IO_ERROR', `${what}: ${detail}${where}`, { path, cause: err });
}
