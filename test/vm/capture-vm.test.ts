import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Disk } from '../../lib/chain/disk.js';
import { captureVm } from '../../lib/vm/capture-vm.js';
import type { CapturedChainDisk, CapturedFile } from '../../lib/vm/capture-types.js';
import { inspectVm } from '../../lib/vm/vm-inventory.js';
import { makeChainVm, makeTwoDiskChainVm } from '../../fixtures/make-fixtures.js';
import { tempDir } from '../helpers/temp-dir.js';

const t = tempDir('dd-capture-');
afterAll(t.cleanup);
let n = 0;
const fresh = () => path.join(t.dir, `c${n++}`);

function hooks(root: string, body = ''): { dir: string; events: () => string[] } {
  const dir = path.join(root, 'hooks');
  fs.mkdirSync(dir, { recursive: true });
  const marker = path.join(root, 'marker');
  fs.writeFileSync(path.join(dir, '10-app'), `#!/bin/sh\necho "app $1" >> "${marker}"\n${body}\n`, { mode: 0o755 });
  return { dir, events: () => (fs.existsSync(marker) ? fs.readFileSync(marker, 'utf8').trim().split('\n') : []) };
}

describe('captureVm', () => {
  it('chain disks: one snapshot per disk inside a quiesced window; the snapshot holds the state of that instant', async () => {
    const root = fresh();
    const dir = await makeChainVm(root);
    const h = hooks(root);
    const before = await Disk.open(path.join(dir, 'system.chain'), { readOnly: true });
    const expected = await before.read(0, 4 * 2 ** 20);
    await before.close();
    const cap = await captureVm(dir, { hooks: { hooksDir: h.dir }, id: 'b1' });
    expect(cap.consistency).toBe('quiesced');
    expect(h.events()).toEqual(['app freeze', 'app thaw']);
    expect(cap.quiesce.hooks.map((o) => `${o.hook}:${o.phase}:${o.ok}`)).toEqual(['10-app:freeze:true', '10-app:thaw:true']);
    expect(cap.freezeWindowMs).toBeGreaterThan(0);
    const disks = cap.items.filter((i): i is CapturedChainDisk => i.type === 'chain-disk');
    expect(disks.map((d) => [d.node, d.snapshot.name])).toEqual([
      ['scsi0:0', 'deltadisk-capture-b1'],
      ['scsi0:1', 'deltadisk-capture-b1'],
    ]);
    expect(cap.items.filter((i) => i.type === 'file').map((i) => `${i.kind}:${i.name}`).sort()).toEqual(['config:web.vmx', 'log:vmware.log', 'nvram:web.nvram', 'snapshot-list:web.vmsd']);
    // The VM writes on after the thaw; the capture keeps the instant.
    const live = await Disk.open(path.join(dir, 'system.chain'));
    await live.write(0, Buffer.alloc(2 ** 20, 0xee));
    await live.close();
    const disk = await cap.openChainDisk(disks[0]!);
    const reader = await disk.openSnapshot(disks[0]!.snapshot.name);
    expect((await reader.read(0, 4 * 2 ** 20)).equals(expected)).toBe(true);
    await reader.close();
    await disk.close();
    // The capture's own handle reads the instant too: read-only since the window,
    // its writer lock let go (the VM's write above opened the disk), closed by release.
    const held = cap.heldDisk(disks[0]!)!;
    expect(held.readOnly).toBe(true);
    const through = await held.openSnapshot(disks[0]!.snapshot.name);
    expect((await through.read(0, 4 * 2 ** 20)).equals(expected)).toBe(true);
    await through.close();
    const rel = await cap.release({ deleteSnapshots: true });
    expect(held.closed).toBe(true);
    expect(cap.heldDisk(disks[0]!)).toBeUndefined();
    expect(rel.failures).toEqual([]);
    expect(rel.deletedSnapshots).toHaveLength(2);
    expect(fs.existsSync(cap.captureDir)).toBe(false);
    const after = await inspectVm(dir);
    expect(after.disks.every((d) => d.chain!.snapshots.length === 0)).toBe(true);
    const again = await Disk.open(path.join(dir, 'system.chain'), { readOnly: true });
    expect((await again.read(0, 2 ** 20)).every((b) => b === 0xee)).toBe(true);
    await again.close();
  });

  it("runs the caller's preparation beside its own and waits for it, however it ends, before the freeze", async () => {
    const root = fresh();
    const dir = await makeChainVm(root);
    const h = hooks(root);
    const marker = path.join(root, 'marker');
    const seen: string[] = [];
    const cap = await captureVm(dir, {
      hooks: { hooksDir: h.dir },
      id: 'p1',
      prepare: async (inventory) => {
        seen.push(...inventory.disks.map((d) => d.fileName));
        await new Promise((r) => setTimeout(r, 50));
        fs.appendFileSync(marker, 'prepared\n');
      },
    });
    expect(seen).toEqual(['system.chain', 'data1.chain']);
    expect(h.events()).toEqual(['prepared', 'app freeze', 'app thaw']);
    await cap.release({ deleteSnapshots: true });
    // A preparation that fails is the caller's to report: the capture goes on.
    const failing = await captureVm(dir, { id: 'p2', prepare: () => Promise.reject(new Error('no')) });
    expect(failing.items.filter((i) => i.type === 'chain-disk')).toHaveLength(2);
    await failing.release({ deleteSnapshots: true });
  });

  it('VMDK files: running leaves copied while frozen (no reflink on this file system), read-only parents read in place', async () => {
    const root = fresh();
    const dir = makeTwoDiskChainVm(root);
    const cap = await captureVm(dir, { id: 'v1' });
    expect(cap.consistency).toBe('crash-consistent');
    const files = cap.items.filter((i): i is CapturedFile => i.type === 'file');
    const by = (name: string) => files.find((f) => f.name === name)!;
    expect(by('db01-000002-delta.vmdk').method).toMatch(/^(copy|reflink)$/);
    expect(by('db01-flat.vmdk').method).toBe('in-place');
    expect(by('db01-Snapshot1.vmsn').method).toBe('in-place');
    for (const f of files) expect(fs.readFileSync(f.path).equals(fs.readFileSync(f.source)), f.name).toBe(true);
    if (cap.copiedWhileFrozen) expect(cap.warnings.join('\n')).toMatch(/copied while frozen/);
    expect(await cap.checkUnchanged()).toEqual([]);
    fs.appendFileSync(path.join(dir, 'db01-flat.vmdk'), Buffer.alloc(512));
    expect((await cap.checkUnchanged()).map((f) => f.name)).toEqual(['db01-flat.vmdk']);
    await cap.release();
    expect(fs.existsSync(cap.captureDir)).toBe(false);
    // clone: 'reflink' insists: on a file system without reflinks it is UNSUPPORTED, on one with them every file is a clone.
    const strict = await captureVm(dir, { id: 'v2', clone: 'reflink', inPlace: false }).then(
      async (c) => {
        const methods = new Set(c.items.map((i) => i.method));
        await c.release();
        return [...methods].join(',');
      },
      (err: { code: string }) => err.code,
    );
    expect(['UNSUPPORTED', 'reflink']).toContain(strict);
    expect(fs.readdirSync(dir).some((x) => x.startsWith('.deltadisk-capture-'))).toBe(false);
  });

  it('a copy keeps holes: a sparse 64 MiB extent stays sparse in the capture', async () => {
    const root = fresh();
    const dir = makeTwoDiskChainVm(root);
    const cap = await captureVm(dir, { id: 's1', inPlace: false });
    const flat = cap.items.find((i): i is CapturedFile => i.type === 'file' && i.name === 'db01-flat.vmdk')!;
    const st = fs.statSync(flat.path);
    expect(st.size).toBe(64 * 2 ** 20);
    expect(st.blocks * 512).toBeLessThan(2 ** 20);
    await cap.release();
  });

  it('a failed required freeze leaves nothing behind and calls freezeFail', async () => {
    const root = fresh();
    const dir = await makeChainVm(root);
    const h = hooks(root);
    fs.writeFileSync(path.join(h.dir, '20-db'), '#!/bin/sh\n[ "$1" = freeze ] && exit 2\nexit 0\n', { mode: 0o755 });
    await expect(captureVm(dir, { hooks: { hooksDir: h.dir }, id: 'f1' })).rejects.toThrow(expect.objectContaining({ code: 'HOOK_FAILED' }));
    expect(h.events()).toEqual(['app freeze', 'app freezeFail']);
    const inv = await inspectVm(dir);
    expect(inv.disks.every((d) => d.chain!.snapshots.length === 0)).toBe(true);
    expect(inv.skipped.some((s) => s.kind === 'capture')).toBe(false);
    const cap = await captureVm(dir, { hooks: { hooksDir: h.dir, quiesce: 'optional' }, id: 'f2' });
    expect(cap.consistency).toBe('crash-consistent');
    expect(cap.warnings[0]).toMatch(/not quiesced: freeze hook 20-db exited with 2/);
    await cap.release({ deleteSnapshots: true });
  });

  it('an abort inside the window: thaw runs, snapshots already taken are deleted, INTERRUPTED', async () => {
    const root = fresh();
    const dir = await makeChainVm(root);
    const h = hooks(root);
    const ac = new AbortController();
    const system = await Disk.open(path.join(dir, 'system.chain'));
    const data = await Disk.open(path.join(dir, 'data1.chain'));
    // SIGINT arrives right after the first disk's capture point (a bookmark), inside the window.
    const snapshot = system.bookmark.bind(system);
    system.bookmark = async (name: string, description?: string) => {
      const info = await snapshot(name, description);
      ac.abort();
      return info;
    };
    const disks = new Map([
      [fs.realpathSync(path.join(dir, 'system.chain')), system],
      [fs.realpathSync(path.join(dir, 'data1.chain')), data],
    ]);
    await expect(captureVm(dir, { hooks: { hooksDir: h.dir }, id: 'a1', signal: ac.signal, disks })).rejects.toThrow(expect.objectContaining({ code: 'INTERRUPTED' }));
    expect(h.events()).toEqual(['app freeze', 'app thaw']);
    expect(system.snapshots()).toEqual([]);
    expect(data.snapshots()).toEqual([]);
    await system.close();
    await data.close();
    const inv = await inspectVm(dir);
    expect(inv.skipped.filter((s) => s.kind === 'capture')).toEqual([]);
  });

  it('a chain disk held by another writer is LOCKED, unless its handle is passed in', async () => {
    const root = fresh();
    const dir = await makeChainVm(root);
    const held = await Disk.open(path.join(dir, 'data1.chain'));
    await expect(captureVm(dir, { id: 'l1' })).rejects.toThrow(expect.objectContaining({ code: 'LOCKED', message: expect.stringMatching(/disks` option/) }));
    const cap = await captureVm(dir, { id: 'l2', disks: new Map([[fs.realpathSync(path.join(dir, 'data1.chain')), held]]) });
    expect(held.snapshots().map((s) => s.name)).toEqual(['deltadisk-capture-l2']);
    // A given disk stays its holder's: the capture keeps a handle only on what it opened.
    const items = cap.items.filter((i): i is CapturedChainDisk => i.type === 'chain-disk');
    expect(items.map((i) => [path.basename(i.source), cap.heldDisk(i)?.readOnly])).toEqual([
      ['system.chain', true],
      ['data1.chain', undefined],
    ]);
    expect(held.readOnly).toBe(false);
    const rel = await cap.release({ deleteSnapshots: true });
    expect(rel.failures).toEqual([]);
    expect(held.snapshots()).toEqual([]);
    await held.close();
  });

  it('a configuration changed between inspection and capture fails the capture (STATE_MISMATCH)', async () => {
    const root = fresh();
    const dir = await makeChainVm(root);
    const vmx = path.join(dir, 'web.vmx');
    const cap = captureVm(dir, { id: 'm1', hooks: { preFreeze: `printf 'scsi0:5.present = "TRUE"\\nscsi0:5.fileName = "x.vmdk"\\n' >> "${vmx}"` } });
    await expect(cap).rejects.toThrow(expect.objectContaining({ code: 'STATE_MISMATCH' }));
    const inv = await inspectVm(dir);
    expect(inv.disks.filter((d) => d.format === 'chain').every((d) => d.chain!.snapshots.length === 0)).toBe(true);
  });
});

describe('captureVm on a damaged VM', () => {
  it('refuses error-level problems unless accepted, and then captures what is there', async () => {
    const { makeTrickyVm } = await import('../../fixtures/make-fixtures.js');
    const { dir } = makeTrickyVm(fresh());
    await expect(captureVm(dir, { id: 'd1' })).rejects.toThrow(expect.objectContaining({ code: 'VM_INVALID', message: expect.stringMatching(/MISSING_FILE[\s\S]*OUTSIDE_DIRECTORY[\s\S]*CID_MISMATCH/) }));
    expect(fs.readdirSync(dir).some((x) => x.startsWith('.deltadisk-capture-'))).toBe(false);
    const cap = await captureVm(dir, { id: 'd2', acceptProblems: true });
    expect(cap.problems.filter((p) => p.severity === 'error')).toHaveLength(3);
    expect(cap.warnings.join('\n')).toMatch(/looks running and was not quiesced/);
    expect(cap.items.some((i) => i.name === 'scratch-flat.vmdk')).toBe(true);
    await cap.release();
  });
});

describe('capture snapshots kept for incremental backups', () => {
  it('a kept capture gives the change map to the next one; old ones are deleted on request', async () => {
    const { deleteCaptureSnapshots, listCaptureSnapshots } = await import('../../lib/vm/capture-snapshots.js');
    const dir = await makeChainVm(fresh());
    const first = await captureVm(dir, { id: 'n1' });
    await first.release(); // keep the snapshots
    const live = await Disk.open(path.join(dir, 'system.chain'));
    await live.write(5 * 65536, Buffer.alloc(65536, 9));
    await live.close();
    const second = await captureVm(dir, { id: 'n2' });
    const item = second.items.find((i): i is CapturedChainDisk => i.type === 'chain-disk' && i.node === 'scsi0:0')!;
    const disk = await second.openChainDisk(item);
    expect(await disk.changedBlocks('deltadisk-capture-n1', item.snapshot.name)).toEqual([5]);
    await disk.close();
    await second.release();
    const listed = await listCaptureSnapshots(dir);
    expect(listed.map((x) => x.id)).toEqual(['n1', 'n1', 'n2', 'n2']); // oldest first
    expect(listed.map((x) => `${x.node}:${x.id}`).sort()).toEqual(['scsi0:0:n1', 'scsi0:0:n2', 'scsi0:1:n1', 'scsi0:1:n2']);
    const r = await deleteCaptureSnapshots(dir, { keep: ['n2'] });
    expect(r.failed).toEqual([]);
    expect(r.deleted.map((x) => x.id)).toEqual(['n1', 'n1']);
    expect((await listCaptureSnapshots(dir)).map((x) => x.id)).toEqual(['n2', 'n2']);
  });
});

// Reflinks need btrfs, XFS (reflink=1) or similar; this machine's / is ext4. Point
// DELTADISK_REFLINK_DIR at a directory on such a file system to run this one, e.g.
//   truncate -s 600M x.img && mkfs.xfs -m reflink=1 x.img && mount -o loop x.img /mnt/xfs
const reflinkDir = process.env.DELTADISK_REFLINK_DIR;
describe.skipIf(reflinkDir === undefined || reflinkDir === '')('captureVm on a file system with reflinks', () => {
  it('clones instead of copying: nothing is copied while frozen, the clones share extents and stay independent', async () => {
    const root = fs.mkdtempSync(path.join(reflinkDir!, 'dd-reflink-'));
    try {
      const dir = makeTwoDiskChainVm(root);
      fs.writeFileSync(path.join(dir, 'db01.nvram'), Buffer.alloc(8 * 2 ** 20, 0x77));
      const cap = await captureVm(dir, { id: 'r1', clone: 'reflink' });
      const files = cap.items.filter((i): i is CapturedFile => i.type === 'file' && i.method !== 'in-place');
      expect(files.length).toBeGreaterThan(0);
      expect(files.every((f) => f.method === 'reflink')).toBe(true);
      expect(cap.copiedWhileFrozen).toBe(false);
      const leaf = files.find((f) => f.name === 'db01.nvram')!;
      fs.writeFileSync(leaf.source, Buffer.alloc(8 * 2 ** 20, 0x11)); // the VM writes on
      expect(fs.readFileSync(leaf.path).every((b) => b === 0x77)).toBe(true);
      await cap.release();
    } finally {
      fs.rmSync(root, { recursive: true, force: true });
    }
  });
});
