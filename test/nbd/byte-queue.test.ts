/**
 * ByteQueue against a plain concatenated buffer: any chunking of the input and
 * any sequence of takes and discards yield the same bytes in the same order.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ByteQueue } from '../../lib/nbd/byte-queue.js';
import { propertyRuns } from '../helpers/temp-dir.js';

describe('ByteQueue', () => {
  it('matches a flat buffer model under random pushes, takes and discards', () => {
    const op = fc.oneof(
      fc.record({ kind: fc.constant('push' as const), data: fc.uint8Array({ maxLength: 50 }) }),
      fc.record({ kind: fc.constant('take' as const), n: fc.integer({ min: 0, max: 80 }) }),
      fc.record({ kind: fc.constant('discard' as const), n: fc.integer({ min: 0, max: 80 }) }),
    );
    fc.assert(
      fc.property(fc.array(op, { maxLength: 60 }), (ops) => {
        const q = new ByteQueue();
        let model = Buffer.alloc(0);
        for (const o of ops) {
          if (o.kind === 'push') {
            q.push(Buffer.from(o.data));
            model = Buffer.concat([model, Buffer.from(o.data)]);
          } else if (o.kind === 'take') {
            const got = q.take(o.n);
            if (o.n > model.length) expect(got).toBeUndefined();
            else {
              expect(got).toEqual(model.subarray(0, o.n));
              model = model.subarray(o.n);
            }
          } else {
            const k = q.discard(o.n);
            expect(k).toBe(Math.min(o.n, model.length));
            model = model.subarray(k);
          }
          expect(q.length).toBe(model.length);
        }
      }),
      { numRuns: propertyRuns(300) },
    );
  });

  it('takes within one chunk without copying', () => {
    const q = new ByteQueue();
    const chunk = Buffer.from('abcdef');
    q.push(chunk);
    const got = q.take(3)!;
    expect(got.buffer).toBe(chunk.buffer);
    expect(got.toString()).toBe('abc');
  });
});
