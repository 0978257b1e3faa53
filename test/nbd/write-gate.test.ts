/**
 * WriteGate: a frozen section runs with no write inside, waits for the writes
 * already inside, holds new ones back until it ends, and never starves.
 */
import { describe, expect, it } from 'vitest';
import { WriteGate } from '../../lib/nbd/write-gate.js';

function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

describe('WriteGate', () => {
  it('starts a write synchronously when open', () => {
    const gate = new WriteGate();
    let started = false;
    void gate.write(async () => {
      started = true;
    });
    expect(started).toBe(true);
  });

  it('waits for writes inside, holds new writes, then lets them in in order', async () => {
    const gate = new WriteGate();
    const log: string[] = [];
    const first = deferred();
    const w1 = gate.write(async () => {
      log.push('w1 start');
      await first.promise;
      log.push('w1 end');
    });
    const frozen = gate.frozen(async () => {
      log.push(`frozen (inside=${gate.inside})`);
      return 42;
    });
    const w2 = gate.write(async () => void log.push('w2'));
    const w3 = gate.write(async () => void log.push('w3'));
    await new Promise((r) => setTimeout(r, 20));
    expect(log).toEqual(['w1 start']);
    first.resolve();
    const f = await frozen;
    await Promise.all([w1, w2, w3]);
    expect(log).toEqual(['w1 start', 'w1 end', 'frozen (inside=0)', 'w2', 'w3']);
    expect(f.result).toBe(42);
    expect(f.drainMs).toBeGreaterThanOrEqual(15);
    expect(f.freezeMs).toBeGreaterThanOrEqual(f.drainMs);
  });

  it('runs queued frozen sections one at a time, and reopens after a failure', async () => {
    const gate = new WriteGate();
    const log: string[] = [];
    const a = gate.frozen(async () => {
      log.push('a');
      await new Promise((r) => setTimeout(r, 5));
      throw new Error('boom');
    });
    const b = gate.frozen(async () => void log.push('b'));
    const w = gate.write(async () => void log.push('w'));
    await expect(a).rejects.toThrow('boom');
    await b;
    await w;
    expect(log).toEqual(['a', 'b', 'w']);
    let ran = false;
    await gate.write(async () => {
      ran = true;
    });
    expect(ran).toBe(true);
  });

  it('keeps writes out until every queued section has run', async () => {
    const gate = new WriteGate();
    const log: string[] = [];
    let second: Promise<unknown> | undefined;
    let write: Promise<unknown> | undefined;
    await gate.frozen(async () => {
      write = gate.write(async () => void log.push(`write inside=${gate.inside}`));
      second = gate.frozen(async () => void log.push(`second inside=${gate.inside}`));
      log.push('first');
    });
    await second;
    await write;
    expect(log).toEqual(['first', 'second inside=0', 'write inside=1']);
  });
});
