/**
 * SIGINT and SIGTERM during an operation that stops through an AbortSignal (a VM
 * backup, whose thaw hooks must run to completion, each bounded by its own
 * timeout; a backup, which stops at its next chunk and publishes nothing): the
 * first signal aborts it, and every later one is answered with a note (`notes`)
 * and otherwise ignored. Only SIGKILL ends deltadisk before that.
 * The handlers exist only while `fn` runs; outside it the default behaviour holds.
 */
import { DeltaDiskError } from '../lib/index.js';
import type { Output } from './output.js';

export async function withTerminationSignals<T>(
  out: Output,
  fn: (signal: AbortSignal) => Promise<T>,
  notes: { readonly first: string; readonly again: string } = { first: 'stopping; thaw hooks still run', again: 'waiting for the thaw hooks to finish (each within its timeout)' },
): Promise<T> {
  const ac = new AbortController();
  const onSignal = (sig: NodeJS.Signals): void => {
    if (!ac.signal.aborted) {
      out.warn(`${sig} received: ${notes.first}`);
      ac.abort(new Error(sig));
    } else out.warn(`${sig} received again: ${notes.again}`);
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

/**
 * SIGINT and SIGTERM during a command that writes a file (`export`, `convert`): the
 * first signal makes the next `checkpoint()` throw INTERRUPTED (exit 130), so the
 * command stops between two chunks and removes what it had half-written instead of
 * dying with a temporary file or a partial disk left behind. Later signals are
 * ignored until it has. A command that has finished its last checkpoint completes.
 */
export async function withInterruption<T>(out: Output, fn: (checkpoint: () => void) => Promise<T>): Promise<T> {
  let received: NodeJS.Signals | undefined;
  const onSignal = (sig: NodeJS.Signals): void => {
    if (received === undefined) out.info(`${sig} received: stopping and removing the partial output`);
    received ??= sig;
  };
  const checkpoint = (): void => {
    if (received !== undefined) throw new DeltaDiskError('INTERRUPTED', `interrupted by ${received}; the partial output was removed`);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    return await fn(checkpoint);
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}
