/**
 * SIGINT and SIGTERM during an operation that froze something: the first signal
 * aborts the operation (through an AbortSignal), and every later one is answered
 * with a note and otherwise ignored, because thaw hooks must run to completion
 * (each bounded by its own timeout). Only SIGKILL ends deltadisk before that.
 * The handlers exist only while `fn` runs; outside it the default behaviour holds.
 */
import type { Output } from './output.js';

export async function withTerminationSignals<T>(out: Output, fn: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const ac = new AbortController();
  const onSignal = (sig: NodeJS.Signals): void => {
    if (!ac.signal.aborted) {
      out.warn(`${sig} received: stopping; thaw hooks still run`);
      ac.abort(new Error(sig));
    } else out.warn(`${sig} received again: waiting for the thaw hooks to finish (each within its timeout)`);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    return await fn(ac.signal);
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}
