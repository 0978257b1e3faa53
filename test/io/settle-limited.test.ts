/**
 * settleLimited: allSettled semantics (every item runs, results in the items'
 * order, rejections reported, not thrown) with never more than `limit` calls
 * running at once.
 */
import { describe, expect, it } from 'vitest';
import { settleLimited } from '../../lib/io/settle-limited.js';

const tick = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('settleLimited', () => {
  it('runs every item, at most `limit` at once, and reports results in order', async () => {
    let running = 0;
    let most = 0;
    const items = [5, 1, 4, 2, 3, 0, 6];
    const out = await settleLimited(items, 3, async (ms, i) => {
      running++;
      most = Math.max(most, running);
      await tick(ms * 3);
      running--;
      if (ms === 4) throw new Error(`item ${i}`);
      return ms * 10;
    });
    expect(most).toBe(3);
    expect(out.map((r) => (r.status === 'fulfilled' ? r.value : (r.reason as Error).message))).toEqual([50, 10, 'item 2', 20, 30, 0, 60]);
  });

  it('no items, and a limit larger than the list or below one', async () => {
    expect(await settleLimited([], 4, async () => 1)).toEqual([]);
    expect(await settleLimited([1, 2], 10, async (x) => x)).toEqual([
      { status: 'fulfilled', value: 1 },
      { status: 'fulfilled', value: 2 },
    ]);
    expect(await settleLimited([1, 2], 0, async (x) => x)).toHaveLength(2);
  });
});
