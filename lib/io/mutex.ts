/**
 * Serialises asynchronous critical sections, in arrival order.
 *
 * Every change to an open disk or repository runs under one Mutex, so two writes
 * to the same block, or a write racing a snapshot, can never interleave; reads do
 * not take it.
 */
export class Mutex {
  #tail: Promise<unknown> = Promise.resolve();
  #held = 0;

  /** True while a section runs or waits. */
  get busy(): boolean {
    return this.#held > 0;
  }

  run<T>(fn: () => Promise<T>): Promise<T> {
    this.#held++;
    const result = this.#tail.then(fn);
    this.#tail = result.then(
      () => {
        this.#held--;
      },
      () => {
        this.#held--;
      },
    );
    return result;
  }
}
