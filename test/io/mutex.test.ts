/**
 * Mutex: critical sections run one at a time, in arrival order, whatever their
 * durations, and a failing section neither blocks nor poisons the ones after it.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Mutex } from '../../lib/io/mutex.js';
import { propertyRuns } from '../helpers/temp-dir.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('Mutex', () => {
  it('runs sections one at a time in arrival order, for any mix of durations', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(fc.oneof(fc.constant(-1), fc.nat(3)), { minLength: 1, maxLength: 12 }), async (delays) => {
        const m = new Mutex();
        const log: string[] = [];
        let inside = 0;
        await Promise.all(
          delays.map((d, i) =>
            m.run(async () => {
              inside++;
              expect(inside).toBe(1);
              log.push(`start ${i}`);
              if (d >= 0) await sleep(d);
              log.push(`end ${i}`);
              inside--;
              return i;
            }),
          ),
        );
        expect(log).toEqual(delays.flatMap((_, i) => [`start ${i}`, `end ${i}`]));
      }),
      { numRuns: propertyRuns(30) },
    );
  });

  it('passes results and errors to the caller; a failure does not block the next section', async () => {
    const m = new Mutex();
    const a = m.run(async () => {
      throw new Error('boom');
    });
    const b = m.run(async () => 42);
    await expect(a).rejects.toThrow('boom');
    await expect(b).resolves.toBe(42);
  });

  it('a section that throws synchronously is still released', async () => {
    const m = new Mutex();
    const bad = m.run((() => {
      throw new Error('sync');
    }) as unknown as () => Promise<void>);
    await expect(bad).rejects.toThrow('sync');
    await expect(m.run(async () => 'next')).resolves.toBe('next');
    expect(m.busy).toBe(false);
  });

  it('is busy while a section runs or waits, and idle after', async () => {
    const m = new Mutex();
    expect(m.busy).toBe(false);
    let release!: () => void;
    const first = m.run(() => new Promise<void>((r) => (release = r)));
    const second = m.run(async () => undefined);
    expect(m.busy).toBe(true);
    await sleep(1);
    release();
    await Promise.all([first, second]);
    await sleep(0);
    expect(m.busy).toBe(false);
  });

  it('a section started from inside another waits for it (no re-entrancy)', async () => {
    const m = new Mutex();
    const order: string[] = [];
    let inner: Promise<void> | undefined;
    await m.run(async () => {
      inner = m.run(async () => {
        order.push('inner');
      });
      await sleep(2);
      order.push('outer done');
    });
    await inner;
    expect(order).toEqual(['outer done', 'inner']);
  });
});
