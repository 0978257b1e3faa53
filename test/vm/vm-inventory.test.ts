import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Disk } from '../../lib/chain/disk.js';
import { inspectVm } from '../../lib/vm/vm-inventory.js';
import type { VmInventory } from '../../lib/vm/vm-inventory-types.js';
import { descriptorText, hostedSparseExtent, makeChainVm, makeFlatVm, makeTrickyVm, makeTwoDiskChainVm, TRICKY_NAME } from '../../fixtures/make-fixtures.js';
import { tempDir } from '../helpers/temp-dir.js';

const t = tempDir('dd-inv-');
afterAll(t.cleanup);

const names = (inv: VmInventory) => inv.files.map((f) => `${f.kind}:${f.name}`);
const codes = (inv: VmInventory) => inv.problems.map((p) => p.code);

describe('inspectVm', () => {
  it('7.a: one flat disk, no snapshots', async () => {
    const dir = makeFlatVm(t.dir);
    const inv = await inspectVm(dir);
    expect(names(inv)).toEqual([
      'config:alpine-web.vmx',
      'disk-descriptor:alpine-web.vmdk',
      'disk-extent:alpine-web-flat.vmdk',
      'extended-config:alpine-web.vmxf',
      'nvram:alpine-web.nvram',
      'snapshot-list:alpine-web.vmsd',
      'log:vmware-0.log',
      'log:vmware-1.log',
      'log:vmware-2.log',
      'log:vmware.log',
    ].sort((a, b) => (a.split(':')[1]! < b.split(':')[1]! ? -1 : 1)));
    expect(inv.disks).toHaveLength(1);
    expect(inv.disks[0]).toMatchObject({ node: 'scsi0:0', capacity: 64 * 2 ** 20, included: true });
    expect(inv.snapshots).toEqual([]);
    expect(inv.problems).toEqual([]);
    const noLogs = await inspectVm(path.join(dir, 'alpine-web.vmx'), { includeLogs: false });
    expect(noLogs.files.some((f) => f.kind === 'log')).toBe(false);
    expect(noLogs.skipped.filter((s) => s.kind === 'log')).toHaveLength(4);
  });

  it('7.b: two disks with two-deep chains, snapshot tree, exclusions', async () => {
    const dir = makeTwoDiskChainVm(t.dir);
    const inv = await inspectVm(dir);
    expect(inv.problems).toEqual([]);
    expect(inv.disks.map((d) => d.links.map((l) => l.name))).toEqual([
      ['db01-000002.vmdk', 'db01-000001.vmdk', 'db01.vmdk'],
      ['db01_1-000002.vmdk', 'db01_1-000001.vmdk', 'db01_1.vmdk'],
    ]);
    expect(inv.snapshots.map((s) => [s.uid, s.parent, s.name, s.current, s.created])).toEqual([
      [1, null, 'before-pg-upgrade', false, '2024-03-14T09:26:53.000Z'],
      [2, 1, 'after-pg-upgrade', true, '2024-03-15T17:02:11.000Z'],
    ]);
    const set = new Set(inv.files.map((f) => f.name));
    for (const n of ['db01-000002-delta.vmdk', 'db01_1-000001-sesparse.vmdk', 'db01_1-flat.vmdk', 'db01-Snapshot1.vmsn', 'db01-Snapshot2.vmsn', 'db01.vmsd', 'db01.nvram', 'db01.vmxf']) expect(set.has(n), n).toBe(true);
    expect(Object.fromEntries(inv.skipped.map((s) => [s.name, s.kind]))).toEqual({ 'db01-7e1d44c9.vswp': 'swap', 'vmx-db01-2115123401-1.vswp': 'swap', 'db01-7e1d44c9.hlog': 'host-log' });
    // Only the running leaves are written while the VM runs.
    expect(inv.files.filter((f) => !f.immutable && f.kind.startsWith('disk')).map((f) => f.name).sort()).toEqual(['db01-000002-delta.vmdk', 'db01-000002.vmdk', 'db01_1-000002-sesparse.vmdk', 'db01_1-000002.vmdk']);
  });

  it('7.c: the tricky directory, every finding reported, nothing outside read', async () => {
    const { dir, outsideDir } = makeTrickyVm(t.dir);
    const inv = await inspectVm(dir);
    expect(inv.displayName).toBe('Büro "Haupt" Server 2 – Ω');
    expect(inv.looksRunning).toBe(true);
    const c = codes(inv);
    for (const code of ['VM_RUNNING', 'MISSING_FILE', 'OUTSIDE_DIRECTORY', 'CID_MISMATCH', 'INDEPENDENT_DISK', 'NEED_CONSOLIDATE', 'ORPHAN_FILE']) expect(c, code).toContain(code);
    const missing = inv.problems.find((p) => p.code === 'MISSING_FILE')!;
    expect(missing).toMatchObject({ severity: 'error', disk: 'scsi0:0' });
    expect(missing.message).toContain(`${TRICKY_NAME}-000001-delta.vmdk`);
    expect(inv.problems.find((p) => p.code === 'CID_MISMATCH')?.message).toMatch(/0badf00d.*0badc0de/);
    expect(inv.problems.find((p) => p.code === 'ORPHAN_FILE')?.message).toContain('Snapshot7.vmsn');
    expect(inv.disks.find((d) => d.node === 'scsi0:1')).toMatchObject({ outside: true, included: false });
    expect(inv.files.some((f) => f.path.startsWith(outsideDir))).toBe(false);
    expect(inv.disks.find((d) => d.node === 'scsi0:3')).toMatchObject({ independent: true, included: true });
    expect(inv.disks.some((d) => d.fileName === 'old-boot.vmdk')).toBe(false);
    const skipped = Object.fromEntries(inv.skipped.map((s) => [s.name, s.kind]));
    expect(skipped).toMatchObject({
      [`${TRICKY_NAME}.vmx.lck`]: 'lock',
      'data-000001.vmdk.lck': 'lock',
      '564d8c2e-1f0a-7b3d-9e55-0c2a4b6d8e10.vmem': 'live-memory',
      '564d8c2e-1f0a-7b3d-9e55-0c2a4b6d8e10.vmem.lck': 'lock',
      [`${TRICKY_NAME}-3f9c0d21.vswp`]: 'swap',
      [`${TRICKY_NAME}-Snapshot7.vmsn`]: 'orphan',
    });
    expect(inv.files.map((f) => f.name)).toContain(`${TRICKY_NAME}-Snapshot3.vmsn`);
    // Allowing the outside directory brings the disk in, and shows that snapshot 3 does not cover it.
    const allowed = await inspectVm(dir, { allowPaths: [outsideDir] });
    expect(allowed.disks.find((d) => d.node === 'scsi0:1')).toMatchObject({ outside: true, included: true, capacity: 16384 * 512 });
    expect(allowed.files.map((f) => f.name)).toContain(path.join(outsideDir, 'archive data-flat.vmdk'));
    expect(allowed.problems.some((p) => p.code === 'SNAPSHOT_INCONSISTENT' && /not covered by snapshot 3/.test(p.message))).toBe(true);
  });

  it('answers the same for an outside reference whether or not it exists (no probing)', async () => {
    const dir = path.join(t.dir, 'probe');
    fs.mkdirSync(dir);
    const vmx = (p: string) => `scsi0:0.present = "TRUE"\nscsi0:0.fileName = "${p}"\n`;
    fs.writeFileSync(path.join(dir, 'p.vmx'), vmx('/etc/passwd'));
    const a = (await inspectVm(dir)).problems.map((p) => p.message.replace('/etc/passwd', 'X'));
    fs.writeFileSync(path.join(dir, 'p.vmx'), vmx('/etc/no-such-file-here'));
    const b = (await inspectVm(dir)).problems.map((p) => p.message.replace('/etc/no-such-file-here', 'X'));
    expect(a).toEqual(b);
    // A hint leading out through ../ and a symlink leading out are refused too.
    fs.writeFileSync(path.join(dir, 'p.vmx'), vmx('d.vmdk'));
    fs.writeFileSync(path.join(dir, 'd.vmdk'), descriptorText({ cid: '11111111', parentCid: '22222222', createType: 'vmfsSparse', hint: '../../../etc/shadow', extents: ['RW 8 VMFSSPARSE "link.vmdk"'] }));
    fs.symlinkSync('/etc/hostname', path.join(dir, 'link.vmdk'));
    const inv = await inspectVm(dir);
    expect(codes(inv)).toEqual(expect.arrayContaining(['OUTSIDE_DIRECTORY', 'UNSAFE_PATH']));
    expect(inv.files.map((f) => f.name).sort()).toEqual(['d.vmdk', 'p.vmx']);
  });

  it('follows hosted sparse chains with embedded descriptors and detects loops and capacity changes', async () => {
    const dir = path.join(t.dir, 'hosted');
    fs.mkdirSync(dir);
    const desc = (cid: string, parent: string | undefined, self: string, sectors: number) =>
      descriptorText({ cid, createType: 'monolithicSparse', ...(parent === undefined ? {} : { parentCid: parent.split(':')[0]!, hint: parent.split(':')[1]! }), extents: [`RW ${sectors} SPARSE "${self}"`] });
    fs.writeFileSync(path.join(dir, 'h.vmdk'), hostedSparseExtent({ capacitySectors: 2048, descriptor: desc('aaaaaaaa', undefined, 'h.vmdk', 2048) }));
    fs.writeFileSync(path.join(dir, 'h-000001.vmdk'), hostedSparseExtent({ capacitySectors: 4096, descriptor: desc('bbbbbbbb', 'aaaaaaaa:h.vmdk', 'h-000001.vmdk', 4096) }));
    fs.writeFileSync(path.join(dir, 'h.vmx'), 'ide0:0.present = "TRUE"\nide0:0.fileName = "h-000001.vmdk"\n');
    const inv = await inspectVm(dir);
    expect(inv.disks[0]!.links.map((l) => [l.name, l.embedded])).toEqual([
      ['h-000001.vmdk', true],
      ['h.vmdk', true],
    ]);
    expect(codes(inv)).toEqual(['CAPACITY_MISMATCH']);
    fs.writeFileSync(path.join(dir, 'h.vmdk'), hostedSparseExtent({ capacitySectors: 4096, descriptor: desc('aaaaaaaa', 'bbbbbbbb:h-000001.vmdk', 'h.vmdk', 4096) }));
    expect(codes(await inspectVm(dir))).toContain('CHAIN_LOOP');
  });

  it('7.d: a VM whose disks are deltadisk chains', async () => {
    const dir = await makeChainVm(t.dir);
    const d = await Disk.open(path.join(dir, 'data1.chain'));
    await d.snapshot('before');
    await d.close();
    const inv = await inspectVm(dir);
    expect(inv.problems).toEqual([]);
    expect(inv.disks.map((x) => [x.node, x.format, x.capacity, x.chain?.snapshots.map((s) => s.name)])).toEqual([
      ['scsi0:0', 'chain', 64 * 2 ** 20, []],
      ['scsi0:1', 'chain', 64 * 2 ** 20, ['before']],
    ]);
    expect(inv.files.filter((f) => f.chainDisk).map((f) => `${f.kind}:${f.name}:${f.immutable}`)).toEqual([
      'chain-delta:data1-000001.delta:true',
      'chain-delta:data1-000002.delta:false',
      'chain-descriptor:data1.chain:false',
      'chain-delta:system-000001.delta:false',
      'chain-descriptor:system.chain:false',
    ]);
    fs.writeFileSync(path.join(dir, 'notes.txt'), 'hello');
    const withUnknown = await inspectVm(dir);
    expect(withUnknown.problems.map((p) => p.code)).toEqual(['UNKNOWN_FILE']);
    expect((await inspectVm(dir, { includeUnknown: true })).files.some((f) => f.name === 'notes.txt' && f.kind === 'other')).toBe(true);
  });

  it('without opening chains (as a capture inventories): the same answer for healthy disks; a damaged layer is left for the open that follows', async () => {
    const dir = await makeChainVm(path.join(t.dir, 'outline'));
    const d = await Disk.open(path.join(dir, 'data1.chain'));
    await d.write(0, Buffer.alloc(65536, 7));
    await d.snapshot('before');
    await d.close();
    const opened = await inspectVm(dir);
    const outlined = await inspectVm(dir, { openChains: false });
    expect(outlined).toEqual(opened);

    // A layer cut short inside its header: only an open sees it.
    const layer = path.join(dir, 'data1-000001.delta');
    fs.truncateSync(layer, 100);
    expect(codes(await inspectVm(dir))).toContain('CHAIN_DISK_ERROR');
    expect(codes(await inspectVm(dir, { openChains: false }))).not.toContain('CHAIN_DISK_ERROR');
    await expect(Disk.open(path.join(dir, 'data1.chain'))).rejects.toMatchObject({ code: 'TRUNCATED' });

    // A missing layer file is seen either way.
    fs.rmSync(layer);
    for (const inv of [await inspectVm(dir), await inspectVm(dir, { openChains: false })]) {
      expect(inv.problems.filter((p) => p.code === 'CHAIN_DISK_ERROR').map((p) => p.disk)).toEqual(['scsi0:1']);
      expect(inv.disks.find((x) => x.node === 'scsi0:1')?.included).toBe(false);
    }
  });

  it('suspend state: .vmss and its memory only when the vmx says the VM is suspended', async () => {
    const dir = makeFlatVm(path.join(t.dir, 'susp'));
    const vmx = path.join(dir, 'alpine-web.vmx');
    fs.writeFileSync(path.join(dir, 'alpine-web-1a2b3c4d.vmss'), Buffer.alloc(1024, 1));
    fs.writeFileSync(path.join(dir, 'alpine-web-1a2b3c4d.vmem'), Buffer.alloc(4096, 2));
    const running = await inspectVm(dir);
    expect(Object.fromEntries(running.skipped.map((s) => [s.name, s.kind]))).toEqual({ 'alpine-web-1a2b3c4d.vmss': 'suspend-state', 'alpine-web-1a2b3c4d.vmem': 'live-memory' });
    expect(running.suspended).toBe(false);
    fs.writeFileSync(vmx, fs.readFileSync(vmx, 'utf8').replace('checkpoint.vmState = ""', 'checkpoint.vmState = "alpine-web-1a2b3c4d.vmss"'));
    const suspended = await inspectVm(dir);
    expect(suspended.suspended).toBe(true);
    expect(suspended.files.filter((f) => f.kind.startsWith('suspend')).map((f) => `${f.kind}:${f.name}`)).toEqual(['suspend-memory:alpine-web-1a2b3c4d.vmem', 'suspend-state:alpine-web-1a2b3c4d.vmss']);
    fs.unlinkSync(path.join(dir, 'alpine-web-1a2b3c4d.vmss'));
    expect((await inspectVm(dir)).problems.map((p) => [p.code, p.severity])).toEqual([['MISSING_FILE', 'error']]);
  });

  it('refuses what is not one VM', async () => {
    const dir = path.join(t.dir, 'two');
    fs.mkdirSync(dir);
    await expect(inspectVm(dir)).rejects.toThrow(expect.objectContaining({ code: 'VM_INVALID', message: expect.stringMatching(/no .vmx/) }));
    fs.writeFileSync(path.join(dir, 'a.vmx'), '');
    fs.writeFileSync(path.join(dir, 'b.vmx'), '');
    await expect(inspectVm(dir)).rejects.toThrow(/several configurations/);
    expect((await inspectVm(path.join(dir, 'a.vmx'))).vmx).toBe('a.vmx');
    await expect(inspectVm(path.join(t.dir, 'nope'))).rejects.toThrow(expect.objectContaining({ code: 'NOT_FOUND' }));
  });
});
