/**
 * The exit codes of the deltadisk CLI, in one place (docs/CLI.md lists them).
 * Any code not listed here must be treated as a failure.
 */
import type { ErrorCode } from '../lib/index.js';

export const ExitCode = {
  OK: 0,
  /** The command failed. */
  FAILURE: 1,
  /** Bad usage: unknown option, invalid argument, missing confirmation. */
  USAGE: 2,
  /** Completed, with warnings (some source files could not be read). */
  WARNINGS: 3,
  /** The disk, repository, snapshot or backup does not exist. */
  NOT_FOUND: 10,
  /** Another process holds the lock. */
  LOCKED: 11,
  /** Damaged data: a disk or repository failed its checks. */
  CORRUPT: 12,
  /** No space left on the device. */
  NO_SPACE: 13,
  /** Interrupted by SIGINT or SIGTERM. */
  INTERRUPTED: 130,
  /** The reader of stdout (or stderr) went away before the command finished (as SIGPIPE ends other tools). */
  BROKEN_PIPE: 141,
} as const;
export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode];

/** `deltadisk check` uses qemu-img's convention instead. */
export const CheckExit = {
  CLEAN: 0,
  /** The check could not run. */
  FAILED: 1,
  CORRUPT: 2,
  /** Only leaks: unreferenced files or data, no harm to content. */
  LEAKS: 3,
} as const;

export function exitCodeFor(code: ErrorCode): ExitCode {
  switch (code) {
    case 'INVALID_ARGUMENT':
    case 'OUT_OF_RANGE':
      return ExitCode.USAGE;
    case 'NOT_FOUND':
    case 'SNAPSHOT_NOT_FOUND':
    case 'REPO_NOT_FOUND':
    case 'BACKUP_NOT_FOUND':
      return ExitCode.NOT_FOUND;
    case 'LOCKED':
    case 'LOCK_INVALID':
    case 'LOCK_LOST':
      return ExitCode.LOCKED;
    case 'CHAIN_CORRUPT':
    case 'CHECKSUM_MISMATCH':
    case 'TRUNCATED':
    case 'REPO_CORRUPT':
    case 'BASE_MODIFIED':
    case 'STATE_MISMATCH':
      return ExitCode.CORRUPT;
    case 'NO_SPACE':
      return ExitCode.NO_SPACE;
    case 'INTERRUPTED':
      return ExitCode.INTERRUPTED;
    default:
      return ExitCode.FAILURE;
  }
}
