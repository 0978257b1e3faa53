/**
 * Known bug, left failing on purpose (it.fails): `Disk.create` writes the first
 * delta (`disk-000001.delta`, made durable with a directory fsync) before the
 * descriptor. A crash or a kill between the two (seven of the ten operations of a
 * create; SIGKILL alone is enough, no power loss needed) leaves the delta without a
 * descriptor: `Disk.open` says NOT_FOUND, and every later `Disk.create` of the same
 * disk fails with ALREADY_EXISTS on the delta, until someone deletes it by hand
 * (nothing documents that).
 *
 * A possible fix, for the lead to decide (it removes a file): when creating, a
 * first delta with no descriptor, no sibling deltas, and a header that says it is
 * an empty, unsealed root layer (log end at 8192, no parent, no snapshot) is the
 * leftover of an interrupted create and can be removed (with any
 * `disk.chain.tmp-*`); or name the first layer with the disk id so a retry never
 * collides. When fixed, drop `.fails`.
 *
 * Found while extending the crash explorer to `Disk.create`.
 */
import { describe, expect, it } from 'vitest';
import { Disk } from '../../lib/chain/disk.js';
import { CrashFS } from '../harness/crash-fs.js';

describe('regression: a create interrupted after its first delta', () => {
  it.fails('does not block creating the disk again', async () => {
    const fs = new CrashFS();
    await fs.mkdirp('/c/vm');
    fs.checkpoint();
    const disk = await Disk.create('/c/vm/disk.chain', { fs, lock: false, size: 65536, blockSize: 4096 });
    await disk.close();
    // Every point at which the delta exists and the descriptor does not.
    let checked = 0;
    for (let point = 0; point <= fs.length; point++) {
      const { fs: crashed } = fs.crashState(point, { kind: 'keep-all' });
      const names = await crashed.readdir('/c/vm');
      if (!names.includes('disk-000001.delta') || names.includes('disk.chain')) continue;
      checked++;
      await expect(Disk.open('/c/vm/disk.chain', { fs: crashed, lock: false })).rejects.toMatchObject({ code: 'NOT_FOUND' });
      const again = await Disk.create('/c/vm/disk.chain', { fs: crashed, lock: false, size: 65536, blockSize: 4096 });
      await again.close();
    }
    expect(checked).toBeGreaterThan(0);
  });
});
