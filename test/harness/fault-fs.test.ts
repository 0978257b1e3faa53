/**
 * The fault-injecting file system: which call fails, for how long, and that it
 * counts what the sweep needs.
 */
import { describe, expect, it } from 'vitest';
import { MemoryFileSystem } from '../../lib/io/memory-file-system.js';
import { FaultFS, MUTATING_OPS } from './fault-fs.js';

async function fixture(): Promise<{ ffs: FaultFS; mem: MemoryFileSystem }> {
  const mem = new MemoryFileSystem();
  await mem.mkdirp('/d');
  return { ffs: new FaultFS(mem), mem };
}

describe('FaultFS', () => {
  it('fails the Nth matching call once (transient)', async () => {
    const { ffs } = await fixture();
    const h = await ffs.open('/d/f', 'createExclusive');
    ffs.arm({ at: 2, ops: ['write'], errno: 'EIO', persistent: false });
    await h.write([Buffer.from('a')], 0);
    await h.datasync(); // not a write: not counted
    await expect(h.write([Buffer.from('b')], 1)).rejects.toMatchObject({ code: 'EIO', syscall: 'write' });
    await h.write([Buffer.from('c')], 1);
    expect(ffs.injected).toHaveLength(1);
  });

  it('keeps failing from the Nth call on (persistent), with ENOSPC', async () => {
    const { ffs } = await fixture();
    ffs.arm({ at: 1, ops: 'any', errno: 'ENOSPC', persistent: true });
    await expect(ffs.mkdir('/d/x')).rejects.toMatchObject({ code: 'ENOSPC' });
    await expect(ffs.stat('/d')).rejects.toMatchObject({ code: 'ENOSPC' });
    ffs.disarm();
    await ffs.mkdir('/d/x');
    expect(ffs.injected.map((f) => f.op)).toEqual(['mkdir', 'stat']);
  });

  it('counts calls by kind, and a failed close still closes', async () => {
    const { ffs } = await fixture();
    const h = await ffs.open('/d/f', 'createExclusive');
    await h.write([Buffer.from('a')], 0);
    await h.datasync();
    await ffs.syncDir('/d');
    expect(ffs.calls).toBe(4);
    expect(ffs.callsOf(['datasync', 'syncDir'])).toBe(2);
    ffs.arm({ at: 1, ops: ['close'], errno: 'EIO', persistent: false });
    await expect(h.close()).rejects.toMatchObject({ code: 'EIO' });
    await expect(h.write([Buffer.from('b')], 0)).rejects.toMatchObject({ code: 'EBADF' });
  });

  it('fails by path rule a given number of times, traces calls, counts creating opens as create', async () => {
    const { ffs: plain, mem } = await fixture();
    const ffs = new FaultFS(plain.inner, { trace: true }).fail({ op: 'datasync', path: (p) => p.endsWith('/b'), code: 'ENOSPC', times: 1 });
    const a = await ffs.open('/d/a', 'createExclusive');
    const b = await ffs.open('/d/b', 'createExclusive');
    await a.datasync();
    await expect(b.datasync()).rejects.toMatchObject({ code: 'ENOSPC' });
    await b.datasync();
    await ffs.rename('/d/a', '/d/c');
    expect(ffs.trace).toEqual(['create /d/a', 'create /d/b', 'datasync /d/a', 'datasync /d/b', 'datasync /d/b', 'rename /d/c']);
    expect(ffs.callsOf(['create'])).toBe(2);
    expect(await mem.readdir('/d')).toEqual(['b', 'c']);
  });

  it('dies at the Nth mutating call: it and every later call of any kind fail', async () => {
    const { ffs } = await fixture();
    ffs.arm({ at: 2, ops: MUTATING_OPS, errno: 'EIO', persistent: true, dead: true });
    const h = await ffs.open('/d/f', 'createExclusive');
    await ffs.stat('/d/f'); // not mutating: not counted
    expect(ffs.crashed).toBe(false);
    await expect(h.write([Buffer.from('a')], 0)).rejects.toMatchObject({ code: 'EIO' });
    expect(ffs.crashed).toBe(true);
    await expect(ffs.stat('/d/f')).rejects.toMatchObject({ code: 'EIO' });
    await expect(h.read(Buffer.alloc(1), 0, 1, 0)).rejects.toMatchObject({ code: 'EIO' });
  });
});
