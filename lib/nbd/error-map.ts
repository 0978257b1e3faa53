/**
 * Between deltadisk's error codes and the NBD protocol's error values. Pure.
 *
 * The server answers a failed request with the protocol's value for what went
 * wrong (EPERM for a write to a read-only export, ENOSPC for a full disk or a
 * write past the end, EINVAL for a bad request, ESHUTDOWN while stopping, EIO for
 * everything else); the client turns a value back into a DeltaDiskError.
 */
import { DeltaDiskError, isDeltaDiskError } from '../errors.js';
import { Err, type NbdErrno } from './constants.js';

/** The protocol error for a failure of a request. */
export function nbdErrnoFor(err: unknown): NbdErrno {
  if (!isDeltaDiskError(err)) return Err.EIO;
  switch (err.code) {
    case 'READ_ONLY':
      return Err.EPERM;
    case 'NO_SPACE':
      return Err.ENOSPC;
    case 'INVALID_ARGUMENT':
    case 'OUT_OF_RANGE':
    case 'LIMIT_EXCEEDED':
      return Err.EINVAL;
    case 'NOT_OPEN':
    case 'INTERRUPTED':
      return Err.ESHUTDOWN;
    default:
      return Err.EIO;
  }
}

const NAMES: Record<number, string> = {
  [Err.EPERM]: 'EPERM',
  [Err.EIO]: 'EIO',
  [Err.ENOMEM]: 'ENOMEM',
  [Err.EINVAL]: 'EINVAL',
  [Err.ENOSPC]: 'ENOSPC',
  [Err.EOVERFLOW]: 'EOVERFLOW',
  [Err.ENOTSUP]: 'ENOTSUP',
  [Err.ESHUTDOWN]: 'ESHUTDOWN',
};

export function nbdErrnoName(errno: number): string {
  return NAMES[errno] ?? `error ${errno}`;
}

/** The DeltaDiskError for an error a server returned; unknown values count as EINVAL, as the protocol says. */
export function errorFromNbd(errno: number, message: string, what: string, offset?: number): DeltaDiskError {
  const text = `${what}: the server answered ${nbdErrnoName(errno)}${message ? ` (${message})` : ''}`;
  const details = { offset };
  switch (errno) {
    case Err.EPERM:
      return new DeltaDiskError('READ_ONLY', text, details);
    case Err.ENOSPC:
      return new DeltaDiskError('NO_SPACE', text, details);
    case Err.EIO:
    case Err.ENOMEM:
      return new DeltaDiskError('IO_ERROR', text, details);
    case Err.ENOTSUP:
      return new DeltaDiskError('UNSUPPORTED', text, details);
    case Err.ESHUTDOWN:
      return new DeltaDiskError('INTERRUPTED', text, details);
    default:
      return new DeltaDiskError('INVALID_ARGUMENT', text, details);
  }
}
