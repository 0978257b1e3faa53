/**
 * File names in the vmsd (a snapshot's state file) and in a vmsn (its memory file)
 * are data: `vm snapshot delete` and `revert` must never delete, read or copy out
 * anything they name outside the VM directory, through a symbolic link, or that is
 * not a regular file, and must refuse before the vmsd is rewritten.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { encodeVmsn } from '../../lib/format/vmsn.js';
import { deleteVmSnapshot, revertVmSnapshot } from '../../lib/vm/vm-snapshots.js';
import { tempDir } from '../helpers/temp-dir.js';

const t = tempDir('dd-vmsnap-paths-');
afterAll(t.cleanup);
let n = 0;

function vmsdText(fileName: string): string {
  return ['.encoding = "UTF-8"', 'snapshot.lastUID = "1"', 'snapshot.current = "1"', 'snapshot.numSnapshots = "1"', 'snapshot0.uid = "1"', `snapshot0.filename = "${fileName}"`, 'snapshot0.displayName = "s"', 'snapshot0.numDisks = "0"', ''].join('\n');
}

function vmsn(memoryFile: string | null): Buffer {
  return encodeVmsn({
    metadata: { uid: 1, name: 's', description: '', created: new Date(0).toISOString(), vmx: 't.vmx', disks: [], memory: memoryFile === null ? null : { file: memoryFile, size: 6 }, consistency: 'crash-consistent' },
    config: Buffer.from('displayName = "old"\n'),
  });
}

/** A VM without disks (a snapshot of it names only files), beside an `outside` directory. */
function vmWith(fileName: string): { dir: string; outside: string; vmsd: string } {
  const root = path.join(t.dir, `r${n++}`);
  const dir = path.join(root, 'vm');
  const outside = path.join(root, 'outside');
  fs.mkdirSync(dir, { recursive: true });
  fs.mkdirSync(outside);
  fs.writeFileSync(path.join(outside, 'victim.txt'), 'victim');
  fs.writeFileSync(path.join(dir, 't.vmx'), 'displayName = "v"\n');
  fs.writeFileSync(path.join(dir, 't.vmsd'), vmsdText(fileName));
  return { dir, outside, vmsd: path.join(dir, 't.vmsd') };
}

describe('vm snapshot delete/revert: names from the vmsd and vmsn stay inside the VM', () => {
  it('delete refuses a state file outside the VM directory and deletes nothing', async () => {
    const v = vmWith('../outside/victim.txt');
    const before = fs.readFileSync(v.vmsd);
    await expect(deleteVmSnapshot(v.dir, 's')).rejects.toMatchObject({ code: 'UNSAFE_PATH' });
    expect(fs.readFileSync(path.join(v.outside, 'victim.txt'), 'utf8')).toBe('victim');
    expect(fs.readFileSync(v.vmsd)).toEqual(before);
  });

  it('delete refuses a state file reached through a symbolic link leading out', async () => {
    const v = vmWith('t-Snapshot1.vmsn');
    fs.symlinkSync(path.join(v.outside, 'victim.txt'), path.join(v.dir, 't-Snapshot1.vmsn'));
    const before = fs.readFileSync(v.vmsd);
    await expect(deleteVmSnapshot(v.dir, 's')).rejects.toMatchObject({ code: 'UNSAFE_PATH' });
    expect(fs.readFileSync(path.join(v.outside, 'victim.txt'), 'utf8')).toBe('victim');
    expect(fs.readFileSync(v.vmsd)).toEqual(before);
  });

  it('delete refuses a state file that is a directory before rewriting the vmsd', async () => {
    const v = vmWith('sub');
    fs.mkdirSync(path.join(v.dir, 'sub'));
    const before = fs.readFileSync(v.vmsd);
    await expect(deleteVmSnapshot(v.dir, 's')).rejects.toMatchObject({ code: 'UNSAFE_PATH' });
    expect(fs.readFileSync(v.vmsd)).toEqual(before);
    expect(fs.statSync(path.join(v.dir, 'sub')).isDirectory()).toBe(true);
  });

  it('delete refuses a state file naming the configuration', async () => {
    const v = vmWith('t.vmx');
    await expect(deleteVmSnapshot(v.dir, 's')).rejects.toMatchObject({ code: 'UNSAFE_PATH' });
    expect(fs.existsSync(path.join(v.dir, 't.vmx'))).toBe(true);
  });

  it('delete still removes a well-formed snapshot and its files', async () => {
    const v = vmWith('t-Snapshot1.vmsn');
    fs.writeFileSync(path.join(v.dir, 't-Snapshot1.vmsn'), vmsn('t-Snapshot1.vmem'));
    fs.writeFileSync(path.join(v.dir, 't-Snapshot1.vmem'), 'memory');
    await deleteVmSnapshot(v.dir, 's');
    expect(fs.existsSync(path.join(v.dir, 't-Snapshot1.vmsn'))).toBe(false);
    expect(fs.existsSync(path.join(v.dir, 't-Snapshot1.vmem'))).toBe(false);
  });

  it('revert refuses to read a state file outside the VM directory', async () => {
    const v = vmWith('../outside/s.vmsn');
    fs.writeFileSync(path.join(v.outside, 's.vmsn'), vmsn(null));
    const before = fs.readFileSync(v.vmsd);
    await expect(revertVmSnapshot(v.dir, 's')).rejects.toMatchObject({ code: 'UNSAFE_PATH' });
    expect(fs.readFileSync(path.join(v.dir, 't.vmx'), 'utf8')).toBe('displayName = "v"\n');
    expect(fs.readFileSync(v.vmsd)).toEqual(before);
  });

  it('revert --memory refuses a memory file outside the VM directory and copies nothing', async () => {
    const v = vmWith('t-Snapshot1.vmsn');
    fs.writeFileSync(path.join(v.dir, 't-Snapshot1.vmsn'), vmsn('../outside/victim.txt'));
    const out = path.join(v.outside, 'memout');
    await expect(revertVmSnapshot(v.dir, 's', { memoryOut: out })).rejects.toMatchObject({ code: 'UNSAFE_PATH' });
    expect(fs.existsSync(out)).toBe(false);
    expect(fs.readFileSync(path.join(v.dir, 't.vmx'), 'utf8')).toBe('displayName = "v"\n');
  });

  it('revert --memory refuses a memory file that is a symbolic link leading out', async () => {
    const v = vmWith('t-Snapshot1.vmsn');
    fs.writeFileSync(path.join(v.dir, 't-Snapshot1.vmsn'), vmsn('t-Snapshot1.vmem'));
    fs.symlinkSync(path.join(v.outside, 'victim.txt'), path.join(v.dir, 't-Snapshot1.vmem'));
    const out = path.join(v.outside, 'memout');
    await expect(revertVmSnapshot(v.dir, 's', { memoryOut: out })).rejects.toMatchObject({ code: 'UNSAFE_PATH' });
    expect(fs.existsSync(out)).toBe(false);
  });

  it('revert --memory copies a memory file inside the VM directory', async () => {
    const v = vmWith('t-Snapshot1.vmsn');
    fs.writeFileSync(path.join(v.dir, 't-Snapshot1.vmsn'), vmsn('t-Snapshot1.vmem'));
    fs.writeFileSync(path.join(v.dir, 't-Snapshot1.vmem'), 'memory');
    const out = path.join(v.outside, 'memout');
    await revertVmSnapshot(v.dir, 's', { memoryOut: out });
    expect(fs.readFileSync(out, 'utf8')).toBe('memory');
    expect(fs.readFileSync(path.join(v.dir, 't.vmx'), 'utf8')).toBe('displayName = "old"\n');
  });
});

describe('recovery of leftovers touches regular files only', () => {
  it('a directory, or a symbolic link leading out, named like a leftover is left alone', async () => {
    const v = vmWith('t-Snapshot1.vmsn');
    fs.writeFileSync(path.join(v.dir, 't-Snapshot1.vmsn'), vmsn(null));
    fs.mkdirSync(path.join(v.dir, 't-Snapshot7.vmem'));
    fs.writeFileSync(path.join(v.outside, 'ours.vmsn'), vmsn(null));
    fs.symlinkSync(path.join(v.outside, 'ours.vmsn'), path.join(v.dir, 't-Snapshot8.vmsn'));
    fs.writeFileSync(path.join(v.dir, 't-Snapshot9.vmsn'), vmsn(null)); // a real leftover: removed
    const r = await deleteVmSnapshot(v.dir, 's');
    expect(r.recovered).toEqual(['removed t-Snapshot9.vmsn, left by an interrupted VM snapshot operation']);
    expect(fs.statSync(path.join(v.dir, 't-Snapshot7.vmem')).isDirectory()).toBe(true);
    expect(fs.lstatSync(path.join(v.dir, 't-Snapshot8.vmsn')).isSymbolicLink()).toBe(true);
    expect(fs.existsSync(path.join(v.outside, 'ours.vmsn'))).toBe(true);
  });
});
