/**
 * The adapter to Disk.check (written in parallel): it must read the plausible
 * result shapes, refuse shapes it does not know (so it gets updated rather than
 * passing silently), and say 'unavailable' while the method does not exist.
 */
import { describe, expect, it } from 'vitest';
import type { Disk } from '../../lib/chain/disk.js';
import { interpretCheck, runCheck } from './check-adapter.js';

describe('check adapter', () => {
  it('reads status strings, exit codes and counts', () => {
    expect(interpretCheck({ status: 'clean' })).toBe('clean');
    expect(interpretCheck({ status: 'leaks-only' })).toBe('leaks');
    expect(interpretCheck({ result: 'corrupt' })).toBe('corrupt');
    expect(interpretCheck({ exitCode: 0 })).toBe('clean');
    expect(interpretCheck({ exitCode: 3 })).toBe('leaks');
    expect(interpretCheck({ exitCode: 2 })).toBe('corrupt');
    expect(interpretCheck({ errors: [], leaks: [] })).toBe('clean');
    expect(interpretCheck({ errors: [], leaks: [{ file: 'x' }] })).toBe('leaks');
    expect(interpretCheck({ corrupt: 1, leaks: 0 })).toBe('corrupt');
  });

  it('refuses a shape it does not know', () => {
    expect(() => interpretCheck({ ok: 'maybe' })).toThrow(/cannot interpret/);
    expect(() => interpretCheck(undefined)).toThrow(/cannot interpret/);
  });

  it('calls Disk.check when it exists, with repair when asked', async () => {
    const calls: unknown[] = [];
    const fake = { check: async (o?: unknown) => (calls.push(o), { status: 'clean' }) } as unknown as Disk;
    expect((await runCheck(fake)).verdict).toBe('clean');
    expect((await runCheck(fake, true)).verdict).toBe('clean');
    expect(calls).toEqual([undefined, { repair: true }]);
    expect((await runCheck({} as Disk)).verdict).toBe('unavailable');
  });
});
