/**
 * The error values the server answers with, per doc/proto.md ("Error values"),
 * and their way back into DeltaDiskError codes on the client.
 */
import { describe, expect, it } from 'vitest';
import { DeltaDiskError } from '../../lib/errors.js';
import { Err } from '../../lib/nbd/constants.js';
import { errorFromNbd, nbdErrnoFor } from '../../lib/nbd/error-map.js';

describe('error mapping', () => {
  it('gives the protocol value the specification names for each failure', () => {
    const e = (code: ConstructorParameters<typeof DeltaDiskError>[0]): number => nbdErrnoFor(new DeltaDiskError(code, 'x'));
    expect(e('READ_ONLY')).toBe(Err.EPERM);
    expect(e('NO_SPACE')).toBe(Err.ENOSPC);
    expect(e('OUT_OF_RANGE')).toBe(Err.EINVAL);
    expect(e('LIMIT_EXCEEDED')).toBe(Err.EINVAL);
    expect(e('NOT_OPEN')).toBe(Err.ESHUTDOWN);
    expect(e('HANDLE_BROKEN')).toBe(Err.EIO);
    expect(e('CHAIN_CORRUPT')).toBe(Err.EIO);
    expect(nbdErrnoFor(new Error('bug'))).toBe(Err.EIO);
  });

  it('maps values back, unknown ones as EINVAL (as the specification tells clients to)', () => {
    expect(errorFromNbd(Err.EPERM, '', 'write').code).toBe('READ_ONLY');
    expect(errorFromNbd(Err.ENOSPC, '', 'write').code).toBe('NO_SPACE');
    expect(errorFromNbd(Err.EIO, 'disk gone', 'read').message).toContain('disk gone');
    expect(errorFromNbd(Err.ESHUTDOWN, '', 'read').code).toBe('INTERRUPTED');
    expect(errorFromNbd(4242, '', 'read').code).toBe('INVALID_ARGUMENT');
  });
});
