/**
 * The DeltaDiskError code of a failure, for tests that check codes: 'ok' when
 * nothing failed; anything that is not a DeltaDiskError is rethrown (a crash is
 * never an acceptable answer).
 */
import { isDeltaDiskError } from '../../lib/errors.js';

export function codeOfSync(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    if (isDeltaDiskError(err)) return err.code;
    throw err;
  }
  return 'ok';
}

export async function codeOf(p: Promise<unknown> | (() => unknown)): Promise<string> {
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (err) {
    if (isDeltaDiskError(err)) return err.code;
    throw err;
  }
  return 'ok';
}
