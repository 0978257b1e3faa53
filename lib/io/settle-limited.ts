/**
 * Work over a list with at most `limit` calls of `fn` running at once, started in the
 * items' order, each taken by the first call slot free. For work that waits mostly on
 * the files of each item (one merge per disk of a VM): concurrency shortens it, the
 * limit keeps a VM with many disks from holding many copy batches in memory at once.
 *
 *  - `runLimited`: one promise per item, in order, for a caller that uses each result
 *    as it comes (and must handle every rejection);
 *  - `settleLimited`: `Promise.allSettled` over them, results in the items' order.
 */
export function runLimited<T, R>(items: readonly T[], limit: number, fn: (item: T, index: number) => Promise<R>): Promise<R>[] {
  const settle: { resolve: (v: R) => void; reject: (e: unknown) => void }[] = [];
  const out = items.map(() => new Promise<R>((resolve, reject) => settle.push({ resolve, reject })));
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      try {
        settle[i]!.resolve(await fn(items[i]!, i));
      } catch (reason) {
        settle[i]!.reject(reason);
      }
    }
  };
  for (let k = 0; k < Math.min(Math.max(1, limit), items.length); k++) void worker();
  return out;
}

export function settleLimited<T, R>(items: readonly T[], limit: number, fn: (item: T, index: number) => Promise<R>): Promise<PromiseSettledResult<R>[]> {
  return Promise.allSettled(runLimited(items, limit, fn));
}
