/**
 * `Promise.allSettled` over `items` with at most `limit` calls of `fn` running at
 * once, results in the items' order. For work that waits mostly on the files of
 * each item (one merge per disk of a VM): concurrency shortens it, the limit keeps
 * a VM with many disks from holding many copy batches in memory at once.
 */
export async function settleLimited<T, R>(items: readonly T[], limit: number, fn: (item: T, index: number) => Promise<R>): Promise<PromiseSettledResult<R>[]> {
  const out = new Array<PromiseSettledResult<R>>(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      try {
        out[i] = { status: 'fulfilled', value: await fn(items[i]!, i) };
      } catch (reason) {
        out[i] = { status: 'rejected', reason };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(Math.max(1, limit), items.length) }, worker));
  return out;
}
