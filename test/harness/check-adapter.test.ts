/**
 * The adapter to Disk.check: it must read the result shapes it knows, refuse others
 * (so it gets updated rather than passing silently), and report what a real check
 * finds on real (in-memory) files: clean, leaks, and clean again after a repair.
 */
import { describe, expect, it } from 'vitest';
import { Disk } from '../../lib/chain/disk.js';
import { MemoryFileSystem } from '../../lib/io/memory-file-system.js';
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

  it('runs Disk.check: clean, leaks from an orphan delta, clean after a repair', async () => {
    const fs = new MemoryFileSystem();
    await fs.mkdirp('/d');
    const disk = await Disk.create('/d/disk.chain', { fs, size: 65536, blockSize: 4096 });
    await disk.write(0, new Uint8Array(4096).fill(7));
    await disk.snapshot('s');
    await disk.close();
    expect((await runCheck('/d/disk.chain', fs, { readData: true })).verdict).toBe('clean');
    const orphan = await fs.open('/d/disk-000099.delta', 'createExclusive');
    await orphan.write([new Uint8Array(100)], 0);
    await orphan.close();
    expect((await runCheck('/d/disk.chain', fs, {})).verdict).toBe('leaks');
    expect((await runCheck('/d/disk.chain', fs, { repair: true })).verdict).toBe('clean');
    expect((await runCheck('/d/disk.chain', fs, {})).verdict).toBe('clean');
  });
});
