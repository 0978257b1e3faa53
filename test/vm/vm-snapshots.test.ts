import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Disk } from '../../lib/chain/disk.js';
import { decodeVmsn } from '../../lib/format/vmsn.js';
import { inspectVm } from '../../lib/vm/vm-inventory.js';
import { createVmSnapshot, deleteVmSnapshot, revertVmSnapshot } from '../../lib/vm/vm-snapshots.js';
import { parseVmsd } from '../../lib/vm/vmsd-file.js';
import { makeChainVm, makeFlatVm } from '../../fixtures/make-fixtures.js';
import { nodeFileSystem } from '../../lib/io/node-file-system.js';
import { FaultFS, MUTATING_OPS } from '../harness/fault-fs.js';
import { propertyRuns, tempDir } from '../helpers/temp-dir.js';

const t = tempDir('dd-vmsnap-');
afterAll(t.cleanup);
let n = 0;
const MiB = 2 ** 20;

async function smallVm(): Promise<string> {
  return makeChainVm(path.join(t.dir, `vm${n++}`), { sizes: [4 * MiB, 4 * MiB], writtenBlocks: 4 });
}

async function readDisk(dir: string, file: string): Promise<Buffer> {
  const d = await Disk.open(path.join(dir, file), { readOnly: true });
  try {
    return await d.read(0, 4 * MiB);
  } finally {
    await d.close();
  }
}

async function writeDisk(dir: string, file: string, byte: number): Promise<void> {
  const d = await Disk.open(path.join(dir, file));
  await d.write(MiB, Buffer.alloc(64 * 1024, byte));
  await d.close();
}

/** Every snapshot the vmsd names exists on every disk it lists; returns the per-disk snapshot names. */
async function checkInvariant(dir: string): Promise<Map<string, string[]>> {
  const vmsd = parseVmsd(fs.readFileSync(path.join(dir, 'web.vmsd')));
  const out = new Map<string, string[]>();
  for (const file of ['system.chain', 'data1.chain']) {
    const d = await Disk.open(path.join(dir, file), { readOnly: true });
    out.set(file, d.snapshots().map((s) => s.name));
    for (const s of vmsd.snapshots) {
      for (const disk of s.disks.filter((x) => x.fileName === file)) {
        expect(d.snapshots().some((x) => x.id === disk.chainSnapshot), `vmsd snapshot ${s.uid} on ${file}`).toBe(true);
      }
      expect(fs.existsSync(path.join(dir, s.fileName!)), `vmsn of ${s.uid}`).toBe(true);
    }
    await d.close();
  }
  return out;
}

describe('VM snapshots of chain disks', () => {
  it('create, list (tree), revert disks and configuration together, delete', async () => {
    const dir = await smallVm();
    const s0 = { system: await readDisk(dir, 'system.chain'), data: await readDisk(dir, 'data1.chain'), vmx: fs.readFileSync(path.join(dir, 'web.vmx')) };
    const memory = path.join(t.dir, `mem-${n}`);
    fs.writeFileSync(memory, Buffer.alloc(3 * MiB, 0x5a));
    const a = await createVmSnapshot(dir, 'before upgrade', { description: 'clean install', memory });
    expect(a).toMatchObject({ uid: 1, vmsn: 'web-Snapshot1.vmsn', memory: 'web-Snapshot1.vmem', consistency: 'crash-consistent' });
    expect(a.disks.map((d) => [d.node, d.snapshotName])).toEqual([
      ['scsi0:0', 'vm-snapshot-1'],
      ['scsi0:1', 'vm-snapshot-1'],
    ]);
    const vmsn = decodeVmsn(fs.readFileSync(path.join(dir, 'web-Snapshot1.vmsn')));
    expect(vmsn.config.equals(s0.vmx)).toBe(true);
    expect(vmsn.metadata.memory).toEqual({ file: 'web-Snapshot1.vmem', size: 3 * MiB });
    await writeDisk(dir, 'system.chain', 0x11);
    await writeDisk(dir, 'data1.chain', 0x22);
    fs.appendFileSync(path.join(dir, 'web.vmx'), 'annotation = "upgraded"\n');
    const b = await createVmSnapshot(dir, 'after upgrade');
    expect(b.uid).toBe(2);
    await expect(createVmSnapshot(dir, 'after upgrade')).rejects.toThrow(expect.objectContaining({ code: 'SNAPSHOT_EXISTS' }));
    const inv = await inspectVm(dir);
    expect(inv.problems).toEqual([]);
    expect(inv.snapshots.map((s) => [s.uid, s.parent, s.name, s.current, s.memoryFile])).toEqual([
      [1, null, 'before upgrade', false, 'web-Snapshot1.vmem'],
      [2, 1, 'after upgrade', true, null],
    ]);
    expect(inv.files.map((f) => `${f.kind}:${f.name}`)).toEqual(expect.arrayContaining(['snapshot-state:web-Snapshot1.vmsn', 'snapshot-memory:web-Snapshot1.vmem', 'snapshot-state:web-Snapshot2.vmsn']));

    const memOut = path.join(t.dir, `memout-${n}`);
    await revertVmSnapshot(dir, 'before upgrade', { memoryOut: memOut });
    expect((await readDisk(dir, 'system.chain')).equals(s0.system)).toBe(true);
    expect((await readDisk(dir, 'data1.chain')).equals(s0.data)).toBe(true);
    expect(fs.readFileSync(path.join(dir, 'web.vmx')).equals(s0.vmx)).toBe(true);
    expect(fs.readFileSync(memOut).equals(fs.readFileSync(memory))).toBe(true);
    expect(parseVmsd(fs.readFileSync(path.join(dir, 'web.vmsd'))).current).toBe(1);
    // A snapshot taken now branches off snapshot 1.
    const c = await createVmSnapshot(dir, 'branch');
    expect(parseVmsd(fs.readFileSync(path.join(dir, 'web.vmsd'))).snapshots.find((s) => s.uid === c.uid)?.parent).toBe(1);

    await deleteVmSnapshot(dir, '#1');
    const after = parseVmsd(fs.readFileSync(path.join(dir, 'web.vmsd')));
    expect(after.snapshots.map((s) => [s.uid, s.parent])).toEqual([
      [2, undefined],
      [3, undefined],
    ]);
    expect(fs.existsSync(path.join(dir, 'web-Snapshot1.vmsn'))).toBe(false);
    expect(fs.existsSync(path.join(dir, 'web-Snapshot1.vmem'))).toBe(false);
    expect((await checkInvariant(dir)).get('system.chain')).toEqual(['vm-snapshot-2', 'vm-snapshot-3']);
    // Snapshot 2 still reads as it was taken.
    await revertVmSnapshot(dir, 'after upgrade');
    expect((await readDisk(dir, 'system.chain')).subarray(MiB, MiB + 65536).every((x) => x === 0x11)).toBe(true);
    expect(fs.readFileSync(path.join(dir, 'web.vmx'), 'utf8')).toContain('annotation = "upgraded"');
    await expect(revertVmSnapshot(dir, 'nope')).rejects.toThrow(expect.objectContaining({ code: 'SNAPSHOT_NOT_FOUND' }));
  });

  it('refuses VMs with VMDK disks and disks held by another writer', async () => {
    const flat = makeFlatVm(path.join(t.dir, `flat${n++}`));
    await expect(createVmSnapshot(flat, 'x')).rejects.toThrow(expect.objectContaining({ code: 'UNSUPPORTED' }));
    const dir = await smallVm();
    const held = await Disk.open(path.join(dir, 'data1.chain'));
    await expect(createVmSnapshot(dir, 'x')).rejects.toThrow(expect.objectContaining({ code: 'LOCKED' }));
    await held.close();
    expect(parseVmsd(fs.readFileSync(path.join(dir, 'web.vmsd'))).snapshots).toEqual([]);
    expect((await checkInvariant(dir)).get('system.chain')).toEqual([]);
  });

  /**
   * Runs `op` crashing at its mutating file-system calls (every one when there are at
   * most DELTADISK_PROPERTY_RUNS of them, default 14, else that many spread evenly,
   * always including the first and last); after each crash checks the invariant and
   * that recovery converges.
   */
  async function crashEverywhere(prepare: (dir: string) => Promise<void>, op: (dir: string, fs: FaultFS) => Promise<unknown>, after: (dir: string, crashed: boolean) => Promise<void>): Promise<number> {
    const template = await smallVm();
    await prepare(template);
    const copy = (): string => {
      const dir = path.join(t.dir, `crash${n++}`, 'web');
      fs.cpSync(template, dir, { recursive: true });
      return dir;
    };
    const counter = new FaultFS(nodeFileSystem);
    const probe = copy();
    await op(probe, counter);
    await after(probe, false);
    const total = counter.callsOf(MUTATING_OPS);
    const budget = propertyRuns(14);
    const steps = total <= budget ? Array.from({ length: total }, (_, i) => i + 1) : [...new Set(Array.from({ length: budget }, (_, i) => 1 + Math.round((i * (total - 1)) / (budget - 1))))];
    for (const step of steps) {
      const dir = copy();
      // Power lost at this mutating call: it and every later call fail.
      const cfs = new FaultFS(nodeFileSystem);
      cfs.arm({ at: step, ops: MUTATING_OPS, errno: 'EIO', persistent: true, dead: true });
      try {
        await op(dir, cfs);
      } catch (err) {
        if (!cfs.crashed) throw err;
      }
      expect(cfs.crashed, `step ${step} of ${total}`).toBe(true);
      await checkInvariant(dir);
      await after(dir, true);
      fs.rmSync(path.dirname(dir), { recursive: true, force: true });
    }
    return total;
  }

  it('create: a crash at any step never leaves a vmsd naming snapshots the disks lack; recovery removes the rest', async () => {
    const steps = await crashEverywhere(
      async () => undefined,
      (dir, cfs) => createVmSnapshot(dir, 'x', { fs: cfs }),
      async (dir, crashed) => {
        // The next operation recovers: afterwards disks hold exactly what the vmsd names.
        await createVmSnapshot(dir, 'y');
        const names = await checkInvariant(dir);
        const vmsd = parseVmsd(fs.readFileSync(path.join(dir, 'web.vmsd')));
        expect(names.get('system.chain')).toEqual(vmsd.snapshots.map((s) => `vm-snapshot-${s.uid}`));
        expect(names.get('data1.chain')).toEqual(vmsd.snapshots.map((s) => `vm-snapshot-${s.uid}`));
        expect(vmsd.snapshots.map((s) => s.displayName)).toEqual(crashed ? (vmsd.snapshots.length === 2 ? ['x', 'y'] : ['y']) : ['x', 'y']);
        const inv = await inspectVm(dir);
        expect(inv.problems.filter((p) => p.severity !== 'info')).toEqual([]);
      },
    );
    expect(steps).toBeGreaterThan(10);
  });

  it('delete: a crash at any step leaves the vmsd consistent; recovery finishes removing the snapshot', async () => {
    await crashEverywhere(
      async (dir) => {
        await createVmSnapshot(dir, 's1');
        await writeDisk(dir, 'system.chain', 0x33);
        await createVmSnapshot(dir, 's2');
      },
      (dir, cfs) => deleteVmSnapshot(dir, 's1', { fs: cfs }),
      async (dir) => {
        await createVmSnapshot(dir, 'y');
        const names = await checkInvariant(dir);
        const vmsd = parseVmsd(fs.readFileSync(path.join(dir, 'web.vmsd')));
        expect(names.get('system.chain')).toEqual(vmsd.snapshots.map((s) => `vm-snapshot-${s.uid}`));
        expect(fs.readdirSync(dir).filter((x) => x.endsWith('.vmsn')).sort()).toEqual(vmsd.snapshots.map((s) => s.fileName).sort());
        expect((await readDisk(dir, 'system.chain')).subarray(MiB, MiB + 65536).every((x) => x === 0x33)).toBe(true);
      },
    );
  });

  it('revert: a crash at any step ends, after recovery, in the old state or the reverted one, disks and configuration together', async () => {
    let s1: Buffer = Buffer.alloc(0);
    let s1vmx = '';
    await crashEverywhere(
      async (dir) => {
        await createVmSnapshot(dir, 's1');
        s1 = await readDisk(dir, 'system.chain');
        s1vmx = fs.readFileSync(path.join(dir, 'web.vmx'), 'utf8');
        await writeDisk(dir, 'system.chain', 0x44);
        fs.appendFileSync(path.join(dir, 'web.vmx'), 'annotation = "s2"\n');
        await createVmSnapshot(dir, 's2');
      },
      (dir, cfs) => revertVmSnapshot(dir, 's1', { fs: cfs }),
      async (dir) => {
        await createVmSnapshot(dir, 'probe');
        await deleteVmSnapshot(dir, 'probe');
        const vmsd = parseVmsd(fs.readFileSync(path.join(dir, 'web.vmsd')));
        const disk = await readDisk(dir, 'system.chain');
        const vmx = fs.readFileSync(path.join(dir, 'web.vmx'), 'utf8');
        if (disk.equals(s1)) {
          expect(vmx).toBe(s1vmx);
          expect(vmsd.current).toBe(1); // probe was taken on s1 and deleted again: current is s1
        } else {
          expect(disk.subarray(MiB, MiB + 65536).every((x) => x === 0x44)).toBe(true);
          expect(vmx).toContain('annotation = "s2"');
          expect(vmsd.current).toBe(2);
        }
        expect(vmsd.extra.some(([k]) => k === 'deltadisk.revertPending')).toBe(false);
      },
    );
  });
});
