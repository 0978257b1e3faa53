/**
 * settleLimited: allSettled semantics (every item runs, results in the items'
 * order, rejections reported, not thrown) with never more than `limit` calls
 * running at once. runLimited: the same work as one promise per item, each settling
 * as its own call ends.
 */
import { describe, expect, it } from 'vitest';
import { runLimited, settleLimited } from '../../lib/io/settle-limited.js';

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

  it('runLimited settles each item as its call ends, a slot freed going to the next item', async () => {
    const started: number[] = [];
    const ended: number[] = [];
    const out = runLimited([30, 5, 5, 5], 2, async (ms, i) => {
      started.push(i);
      await tick(ms);
      ended.push(i);
      if (i === 2) throw new Error('two');
      return i;
    });
    out.forEach((p) => p.catch(() => undefined));
    // The first item is still running when the short ones go through the other slot.
    expect(await out[1]).toBe(1);
    await expect(out[2]).rejects.toThrow('two');
    expect(await out[3]).toBe(3);
    expect(ended).toEqual([1, 2, 3]);
    expect(await out[0]).toBe(0);
    expect(started).toEqual([0, 1, 2, 3]);
  });
});
