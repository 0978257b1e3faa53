/**
 * The gate between a served disk's writes and its snapshots.
 *
 * Any number of write requests (WRITE, TRIM, WRITE_ZEROES, from every connection)
 * pass the gate together; a snapshot closes it, waits for the writes already
 * inside to finish, runs alone, and opens it again. So a snapshot falls between
 * requests, as a hypervisor's does: every write is wholly before it or wholly after
 * it, even one the server splits into several disk calls. New writes arriving
 * while a snapshot waits queue behind it (the snapshot cannot starve), and are
 * admitted again in arrival order.
 *
 * `frozen` sections report how long writes were held back: the freeze window.
 */
export class WriteGate {
  #inside = 0;
  #closed = false;
  /** Writes waiting for the gate to open, in arrival order. */
  #waiting: (() => void)[] = [];
  /** Exclusive sections waiting their turn. */
  #exclusive: (() => void)[] = [];
  /** Resolves the exclusive section waiting for the writes inside to drain. */
  #drained: (() => void) | undefined;

  /** Writes currently inside. */
  get inside(): number {
    return this.#inside;
  }

  /** Runs a write. Starts at once (synchronously) when the gate is open. */
  async write<T>(fn: () => Promise<T>): Promise<T> {
    // A loop: a snapshot may close the gate again before a woken write gets to run.
    while (this.#closed || this.#exclusive.length > 0) await new Promise<void>((resolve) => this.#waiting.push(resolve));
    this.#inside++;
    try {
      return await fn();
    } finally {
      this.#inside--;
      if (this.#inside === 0) this.#drained?.();
    }
  }

  /**
   * Runs `fn` with no write inside: waits for the writes inside to finish, holds
   * new ones back meanwhile. Resolves with `fn`'s result and the time writes were
   * held back (ms), from closing the gate to opening it.
   */
  async frozen<T>(fn: () => Promise<T>): Promise<{ result: T; freezeMs: number; drainMs: number }> {
    if (this.#closed || this.#exclusive.length > 0) {
      await new Promise<void>((resolve) => this.#exclusive.push(resolve));
    } else {
      this.#exclusive.push(() => undefined);
    }
    // This section is now first in line (#exclusive[0]); close the gate.
    this.#closed = true;
    const start = performance.now();
    try {
      if (this.#inside > 0) await new Promise<void>((resolve) => (this.#drained = resolve));
      this.#drained = undefined;
      const drainMs = performance.now() - start;
      const result = await fn();
      return { result, freezeMs: performance.now() - start, drainMs };
    } finally {
      this.#exclusive.shift();
      const next = this.#exclusive[0];
      if (next !== undefined) {
        next();
      } else {
        this.#closed = false;
        const waiting = this.#waiting;
        this.#waiting = [];
        for (const resolve of waiting) resolve();
      }
    }
  }
}
