/**
 * BufferPool: buffers come back for reuse, exactly once, within the byte cap, and
 * a buffer handed out is never handed out again before it is released.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { isDirectAligned } from '../../lib/io/aligned-buffer.js';
import { BufferPool } from '../../lib/io/buffer-pool.js';
import { propertyRuns } from '../helpers/temp-dir.js';

describe('BufferPool', () => {
  it('reuses a released buffer of the same size class', () => {
    const pool = new BufferPool();
    const a = pool.acquire(262144);
    expect(a.length).toBe(262144);
    pool.release(a);
    const b = pool.acquire(200_000);
    expect(b.buffer).toBe(a.buffer);
    expect(b.length).toBe(200_000);
  });

  it('ignores double releases and foreign buffers, and keeps within its cap', () => {
    const pool = new BufferPool(8192);
    const a = pool.acquire(4096);
    pool.release(a);
    pool.release(a);
    expect(pool.pooledBytes).toBe(4096);
    pool.release(Buffer.alloc(4096));
    expect(pool.pooledBytes).toBe(4096);
    const big = pool.acquire(65536);
    pool.release(big);
    expect(pool.pooledBytes).toBe(4096);
    expect(pool.acquire(4096).buffer).toBe(a.buffer);
    expect(pool.acquire(4096).buffer).not.toBe(a.buffer);
  });

  it('keeps the buffer just released when full, dropping ones of other sizes to make room', () => {
    // A merge's 16 MiB staging, then a compaction's 32 MiB ones under a 40 MiB cap:
    // each 32 MiB one must come back, not be made (and faulted in) afresh.
    const pool = new BufferPool(40 * 1024 * 1024);
    const small = pool.acquire(10 * 1024 * 1024);
    pool.release(small);
    const first = pool.acquire(32 * 1024 * 1024);
    const other = pool.acquire(20 * 1024 * 1024); // in use: never dropped
    pool.release(first);
    expect(pool.pooledBytes).toBe(32 * 1024 * 1024);
    expect(pool.acquire(31 * 1024 * 1024).buffer).toBe(first.buffer);
    expect(pool.acquire(10 * 1024 * 1024).buffer).not.toBe(small.buffer);
    pool.release(other);
    expect(pool.pooledBytes).toBe(32 * 1024 * 1024);
    // A buffer larger than the cap is never kept, and drops nothing.
    const huge = pool.acquire(64 * 1024 * 1024);
    pool.release(huge);
    expect(pool.pooledBytes).toBe(32 * 1024 * 1024);
    // Nor is a smaller one kept at a larger one's expense.
    const mid = pool.acquire(16 * 1024 * 1024);
    pool.release(mid);
    expect(pool.pooledBytes).toBe(32 * 1024 * 1024);
    expect(pool.acquire(32 * 1024 * 1024).buffer).toBe(other.buffer);
  });

  it('never hands out memory that is in use', () => {
    fc.assert(
      fc.property(fc.array(fc.oneof(fc.integer({ min: 1, max: 70_000 }), fc.constant(-1)), { maxLength: 80 }), (ops) => {
        const pool = new BufferPool(256 * 1024);
        const inUse: Buffer[] = [];
        for (const op of ops) {
          if (op === -1) {
            const b = inUse.shift();
            if (b !== undefined) pool.release(b);
          } else {
            const b = pool.acquire(op);
            expect(b.length).toBe(op);
            for (const other of inUse) expect(other.buffer).not.toBe(b.buffer);
            inUse.push(b);
          }
        }
      }),
      { numRuns: propertyRuns(200) },
    );
  });
});

describe('BufferPool, aligned', () => {
  it('hands out page-aligned buffers from 64 KiB classes, and reuses released ones', () => {
    const pool = new BufferPool(256 * 1024, { aligned: true });
    const a = pool.acquire(100);
    expect(a.length).toBe(100);
    expect(isDirectAligned(a)).toBe(true);
    pool.release(a);
    expect(pool.pooledBytes).toBe(64 * 1024);
    const b = pool.acquire(70_000);
    expect(isDirectAligned(b)).toBe(true);
    expect(b.buffer).not.toBe(a.buffer);
    const c = pool.acquire(60_000);
    expect(c.buffer).toBe(a.buffer);
    pool.release(Buffer.alloc(64 * 1024));
    pool.release(b);
    pool.release(c);
    pool.release(pool.acquire(128 * 1024));
    expect(pool.pooledBytes).toBe(3 * 64 * 1024);
  });
});
