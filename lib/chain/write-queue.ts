/**
 * Group commit for a disk's writes, keeping call order.
 *
 * Writers queue into the open batch; the first write of a batch schedules its drain
 * under the disk's mutex, and the drain applies every write queued by then (up to
 * MAX_BATCH_BYTES) as one batch. A write resolves when its batch is in the layer, as
 * if it had run alone. Any other operation closes the open batch before it queues
 * (`closeBatchThen`), so writes issued after a snapshot or a flush land after it.
 */
import type { Mutex } from '../io/mutex.js';
import type { PendingWrite } from './write-plan.js';

/** One batch covers at most this many bytes of queued writes. */
export const MAX_BATCH_BYTES = 64 * 1024 * 1024;

type QueuedWrite = PendingWrite & { resolve: () => void; reject: (err: unknown) => void };

export class WriteQueue {
  readonly #mutex: Mutex;
  readonly #apply: (batch: readonly PendingWrite[]) => Promise<void>;
  #open: QueuedWrite[] | undefined;
  #openBytes = 0;

  /** @param apply applies one batch (called under the mutex). */
  constructor(mutex: Mutex, apply: (batch: readonly PendingWrite[]) => Promise<void>) {
    this.#mutex = mutex;
    this.#apply = apply;
  }

  enqueue(w: PendingWrite): Promise<void> {
    return new Promise((resolve, reject) => {
      if (this.#open === undefined || this.#openBytes + w.length > MAX_BATCH_BYTES) {
        const batch: QueuedWrite[] = [];
        this.#open = batch;
        this.#openBytes = 0;
        void this.#mutex.run(async () => {
          if (this.#open === batch) this.#open = undefined;
          try {
            await this.#apply(batch);
            for (const q of batch) q.resolve();
          } catch (err) {
            for (const q of batch) q.reject(err);
          }
        });
      }
      this.#open.push({ ...w, resolve, reject });
      this.#openBytes += w.length;
    });
  }

  /** Runs `fn` under the mutex after everything queued so far; later writes go after it. */
  closeBatchThen<T>(fn: () => Promise<T>): Promise<T> {
    this.#open = undefined;
    return this.#mutex.run(fn);
  }
}
