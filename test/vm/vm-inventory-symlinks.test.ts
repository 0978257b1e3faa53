/**
 * Files `inspectVm` finds by listing the VM directory (logs, unknown files with
 * includeUnknown, a suspended VM's .vmem, the .vmsd, a snapshot's .vmem) pass the
 * same path guard as names from the vmx: a symbolic link leading outside is reported
 * and never included, and its target is never read.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { encodeVmsn } from '../../lib/format/vmsn.js';
import { inspectVm } from '../../lib/vm/vm-inventory.js';
import { isInside } from '../../lib/vm/vm-reference.js';
import { tempDir } from '../helpers/temp-dir.js';

const t = tempDir('dd-inv-links-');
afterAll(t.cleanup);
let n = 0;

function setup(): { dir: string; outside: string; secret: string } {
  const root = path.join(t.dir, `r${n++}`);
  const dir = path.join(root, 'vm');
  const outside = path.join(root, 'outside');
  fs.mkdirSync(dir, { recursive: true });
  fs.mkdirSync(outside);
  const secret = path.join(outside, 'shadow');
  fs.writeFileSync(secret, 'root:secret\n');
  return { dir, outside, secret };
}

function expectNothingOutside(inv: Awaited<ReturnType<typeof inspectVm>>, dir: string, outside: string): void {
  for (const f of inv.files) {
    expect(isInside(dir, f.path), `${f.name} -> ${f.path}`).toBe(true);
    expect(isInside(outside, f.path), f.path).toBe(false);
  }
}

describe('inspectVm: symbolic links among directory entries', () => {
  it('a .vmx found by listing that links outside is refused; one linking inside is read', async () => {
    const { dir, outside } = setup();
    const elsewhere = path.join(outside, 'other.vmx');
    fs.writeFileSync(elsewhere, 'displayName = "other"\n');
    fs.symlinkSync(elsewhere, path.join(dir, 't.vmx'));
    await expect(inspectVm(dir)).rejects.toMatchObject({ code: 'UNSAFE_PATH' });
    // A link to a file inside the directory is its own file under another name.
    fs.rmSync(path.join(dir, 't.vmx'));
    fs.writeFileSync(path.join(dir, 'real.vmx.orig'), 'displayName = "v"\n');
    fs.symlinkSync('real.vmx.orig', path.join(dir, 't.vmx'));
    await expect(inspectVm(dir)).resolves.toBeDefined();
  });

  it('a log or unknown file linking outside is reported, not included', async () => {
    const { dir, outside, secret } = setup();
    fs.writeFileSync(path.join(dir, 't.vmx'), 'displayName = "v"\n');
    fs.symlinkSync(secret, path.join(dir, 'vmware.log'));
    fs.symlinkSync(secret, path.join(dir, 'notes.txt'));
    fs.writeFileSync(path.join(dir, 'vmware-1.log'), 'a real log\n');
    const inv = await inspectVm(dir, { includeUnknown: true });
    expectNothingOutside(inv, dir, outside);
    expect(inv.files.map((f) => f.name).sort()).toEqual(['t.vmx', 'vmware-1.log']);
    const unsafe = inv.problems.filter((p) => p.code === 'UNSAFE_PATH').map((p) => p.path);
    expect(unsafe).toEqual(expect.arrayContaining([path.join(dir, 'vmware.log'), path.join(dir, 'notes.txt')]));
  });

  it("a suspended VM's .vmem linking outside is reported as an error, not included", async () => {
    const { dir, outside, secret } = setup();
    fs.writeFileSync(path.join(dir, 't.vmx'), 'displayName = "v"\ncheckpoint.vmState = "t.vmss"\n');
    fs.writeFileSync(path.join(dir, 't.vmss'), 'state');
    fs.symlinkSync(secret, path.join(dir, 't-1.vmem'));
    const inv = await inspectVm(dir);
    expectNothingOutside(inv, dir, outside);
    expect(inv.problems.some((p) => p.code === 'UNSAFE_PATH' && p.severity === 'error' && p.path === path.join(dir, 't-1.vmem'))).toBe(true);
  });

  it('a .vmsd linking outside is neither read nor included', async () => {
    const { dir, outside } = setup();
    fs.writeFileSync(path.join(dir, 't.vmx'), 'displayName = "v"\n');
    fs.writeFileSync(path.join(outside, 'fake.vmsd'), '.encoding = "UTF-8"\nsnapshot.lastUID = "1"\nsnapshot.numSnapshots = "1"\nsnapshot0.uid = "1"\nsnapshot0.filename = "x.vmsn"\nsnapshot0.displayName = "planted"\nsnapshot0.numDisks = "0"\n');
    fs.symlinkSync(path.join(outside, 'fake.vmsd'), path.join(dir, 't.vmsd'));
    const inv = await inspectVm(dir);
    expectNothingOutside(inv, dir, outside);
    expect(inv.snapshots).toEqual([]);
    expect(inv.problems.some((p) => p.severity === 'error' && p.message.includes('UNSAFE_PATH'))).toBe(true);
  });

  it("a snapshot's .vmem linking outside is reported, not included", async () => {
    const { dir, outside, secret } = setup();
    fs.writeFileSync(path.join(dir, 't.vmx'), 'displayName = "v"\n');
    fs.writeFileSync(path.join(dir, 't.vmsd'), '.encoding = "UTF-8"\nsnapshot.lastUID = "1"\nsnapshot.current = "1"\nsnapshot.numSnapshots = "1"\nsnapshot0.uid = "1"\nsnapshot0.filename = "t-Snapshot1.vmsn"\nsnapshot0.displayName = "s"\nsnapshot0.numDisks = "0"\n');
    fs.writeFileSync(path.join(dir, 't-Snapshot1.vmsn'), encodeVmsn({ metadata: { uid: 1, name: 's', description: '', created: new Date(0).toISOString(), vmx: 't.vmx', disks: [], memory: null, consistency: 'crash-consistent' }, config: Buffer.from('x = "1"\n') }));
    fs.symlinkSync(secret, path.join(dir, 't-Snapshot1.vmem'));
    const inv = await inspectVm(dir);
    expectNothingOutside(inv, dir, outside);
    expect(inv.snapshots[0]!.memoryFile).toBeNull();
    expect(inv.problems.some((p) => p.code === 'UNSAFE_PATH' && p.path === path.join(dir, 't-Snapshot1.vmem'))).toBe(true);
  });

  it('links and memory files inside the directory are still included', async () => {
    const { dir } = setup();
    fs.writeFileSync(path.join(dir, 't.vmx'), 'displayName = "v"\ncheckpoint.vmState = "t.vmss"\n');
    fs.writeFileSync(path.join(dir, 't.vmss'), 'state');
    fs.writeFileSync(path.join(dir, 't-1.vmem'), 'memory');
    fs.writeFileSync(path.join(dir, 'vmware.log'), 'log');
    const inv = await inspectVm(dir);
    expect(inv.files.map((f) => `${f.kind}:${f.name}`).sort()).toEqual(['config:t.vmx', 'log:vmware.log', 'suspend-memory:t-1.vmem', 'suspend-state:t.vmss']);
  });
});
