/**
 * backupVm / restoreVm against real VM directories, real hook processes and a real
 * repository: what is restored is the capture instant, byte for byte; the manifest
 * says how consistent that instant is; the second backup reads only what changed.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { makeChainVm, makeFlatVm, makeTrickyVm, makeTwoDiskChainVm, TRICKY_NAME } from '../../fixtures/make-fixtures.js';
import { Disk } from '../../lib/chain/disk.js';
import { serveDisk } from '../../lib/nbd/serve-disk.js';
import { backup } from '../../lib/repo/backup.js';
import { checkRepository } from '../../lib/repo/check.js';
import { Repository } from '../../lib/repo/repository.js';
import { backupVm } from '../../lib/vm/vm-backup.js';
import { restoreVm } from '../../lib/vm/vm-restore.js';
import { inspectVm } from '../../lib/vm/vm-inventory.js';
import { nodeFileSystem } from '../../lib/io/node-file-system.js';
import { FaultFS } from '../harness/fault-fs.js';
import { codeOf } from '../helpers/errors.js';
import { snapshotTree, withRepo } from '../helpers/repo.js';
import { tempDir } from '../helpers/temp-dir.js';

const MiB = 2 ** 20;
const t = tempDir('dd-vmbackup-');
afterAll(t.cleanup);
let n = 0;
const fresh = (): string => path.join(t.dir, `c${n++}`);

async function newRepo(root: string): Promise<string> {
  const dir = path.join(root, 'repo');
  fs.mkdirSync(root, { recursive: true });
  await Repository.init(dir);
  return dir;
}

function hooksDir(root: string, freezeBody = ''): { dir: string; events: () => string[] } {
  const dir = path.join(root, 'hooks');
  fs.mkdirSync(dir, { recursive: true });
  const marker = path.join(root, 'marker');
  fs.writeFileSync(path.join(dir, '10-db'), `#!/bin/sh\necho "db $1 $DELTADISK_BACKUP_ID" >> "${marker}"\necho "flushed tables ($1)"\n${freezeBody}\n`, { mode: 0o755 });
  return { dir, events: () => (fs.existsSync(marker) ? fs.readFileSync(marker, 'utf8').trim().split('\n') : []) };
}

async function diskBytes(p: string, snapshot?: string): Promise<Buffer> {
  const disk = await Disk.open(p, { readOnly: true, allowPaths: [path.dirname(p)] });
  try {
    if (snapshot === undefined) return Buffer.from(await disk.read(0, disk.virtualSize));
    const r = await disk.openSnapshot(snapshot);
    try {
      return Buffer.from(await r.read(0, disk.virtualSize));
    } finally {
      await r.close();
    }
  } finally {
    await disk.close();
  }
}

function plainFiles(tree: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(tree).filter(([k]) => !/\.(chain|delta)$|\.chain\./.test(k)));
}

async function captureNames(p: string): Promise<string[]> {
  const disk = await Disk.open(p, { readOnly: true });
  try {
    return disk.snapshots().map((s) => s.name).filter((x) => x.startsWith('deltadisk-capture-'));
  } finally {
    await disk.close();
  }
}

describe('backupVm and restoreVm', () => {
  it('backs up a chain-disk VM quiesced, then incrementally; both restore to their capture instants', async () => {
    const root = fresh();
    const dir = await makeChainVm(root, { sizes: [16 * MiB, 8 * MiB] });
    const repoDir = await newRepo(root);
    const h = hooksDir(root);
    const files0 = plainFiles(snapshotTree(dir));
    const sys0 = await diskBytes(path.join(dir, 'system.chain'));
    const data0 = await diskBytes(path.join(dir, 'data1.chain'));

    const first = await withRepo(repoDir, 'shared', (repo) => backupVm(repo, dir, { hooks: { hooksDir: h.dir } }));
    expect(first.vm.consistency).toBe('quiesced');
    expect(first.vm.quiesce.hooks.map((x) => `${x.hook}:${x.phase}:${x.ok}`)).toEqual(['10-db:freeze:true', '10-db:thaw:true']);
    expect(first.vm.quiesce.hooks[0]!.output).toContain('flushed tables (freeze)');
    expect(h.events()).toEqual([`db freeze ${first.id}`, `db thaw ${first.id}`]);
    expect(first.vm.freezeWindowMs).toBeGreaterThan(0);
    expect(first.vm.disks.map((d) => [d.node, d.entries])).toEqual([
      ['scsi0:0', ['system.chain']],
      ['scsi0:1', ['data1.chain']],
    ]);
    expect(first.manifest.entries.map((e) => `${e.type}:${e.path}`).sort()).toEqual(
      ['chain:data1.chain', 'chain:system.chain', 'file:vmware.log', 'file:web.nvram', 'file:web.vmsd', 'file:web.vmx'].sort(),
    );
    expect(first.manifest.paths).toEqual([fs.realpathSync(dir)]);
    // One capture snapshot stays on each disk: the base of the next backup.
    expect(await captureNames(path.join(dir, 'system.chain'))).toEqual([`deltadisk-capture-${first.id}`]);
    expect(fs.readdirSync(dir).some((f) => f.startsWith('.deltadisk-capture-'))).toBe(false);

    // The VM runs on: one 64 KiB block changes, a file changes.
    const live = await Disk.open(path.join(dir, 'system.chain'));
    await live.write(3 * MiB, Buffer.alloc(64 * 1024, 0x5a));
    await live.close();
    fs.appendFileSync(path.join(dir, 'vmware.log'), 'more\n');
    const sys1 = await diskBytes(path.join(dir, 'system.chain'));

    const second = await withRepo(repoDir, 'shared', (repo) => backupVm(repo, dir, { hooks: { hooksDir: h.dir } }));
    expect(second.manifest.entries.find((e) => e.path === 'system.chain')).toMatchObject({ chain: { base: first.id } });
    // Only the chunks holding the changed block (and the small files) were read.
    expect(second.summary.bytesRead).toBeLessThan(first.summary.bytesRead / 10);
    expect(second.summary.bytesRead).toBeLessThan(2 * MiB);
    expect(await captureNames(path.join(dir, 'system.chain'))).toEqual([`deltadisk-capture-${second.id}`]);
    expect(second.deletedSnapshots).toEqual([`system.chain:deltadisk-capture-${first.id}`, `data1.chain:deltadisk-capture-${first.id}`]);

    for (const [b, sys, log] of [
      [first, sys0, 'started\n'],
      [second, sys1, 'started\nmore\n'],
    ] as const) {
      const target = path.join(root, `restore-${b.id}`);
      const r = await withRepo(repoDir, false, (repo) => restoreVm(repo, b.id, { target, verify: true }));
      expect(r.vm.consistency).toBe('quiesced');
      expect((await diskBytes(path.join(target, 'system.chain'))).equals(sys)).toBe(true);
      expect((await diskBytes(path.join(target, 'data1.chain'))).equals(data0)).toBe(true);
      expect(fs.readFileSync(path.join(target, 'vmware.log'), 'utf8')).toBe(log);
      const restored = plainFiles(snapshotTree(target));
      expect({ ...restored, 'vmware.log': '' }).toEqual({ ...files0, 'vmware.log': '' });
      // The restored directory is a VM deltadisk understands.
      const inv = await inspectVm(target);
      expect(inv.problems.filter((p) => p.severity === 'error')).toEqual([]);
      expect(inv.disks.map((d) => d.format)).toEqual(['chain', 'chain']);
    }
  });

  it('reads the disks together: new snapshots on both disks since the last backup, each read against its capture, restore byte-identical', async () => {
    const root = fresh();
    const dir = await makeChainVm(root, { sizes: [16 * MiB, 8 * MiB] });
    const repoDir = await newRepo(root);
    await withRepo(repoDir, 'shared', (repo) => backupVm(repo, dir));
    const names = ['system.chain', 'data1.chain'];
    const expected: Record<string, { snap: Buffer; now: Buffer }> = {};
    for (const [k, name] of names.entries()) {
      const live = await Disk.open(path.join(dir, name));
      // Blocks changed on both sides of a new snapshot, so both the snapshot and the
      // capture differ from what the first backup holds.
      await live.write((k + 1) * MiB, Buffer.alloc(3 * 64 * 1024, 0x31 + k));
      await live.snapshot(`point-${k}`);
      await live.write((k + 2) * MiB + 4096, Buffer.alloc(5000, 0x61 + k));
      await live.close();
      expected[name] = { snap: await diskBytes(path.join(dir, name), `point-${k}`), now: await diskBytes(path.join(dir, name)) };
    }
    const second = await withRepo(repoDir, 'shared', (repo) => backupVm(repo, dir));
    expect(second.manifest.entries.filter((e) => e.type === 'chain').map((e) => e.path)).toEqual(['data1.chain', 'system.chain']);
    const target = path.join(root, 'restore');
    await withRepo(repoDir, false, (repo) => restoreVm(repo, second.id, { target, verify: true }));
    for (const [k, name] of names.entries()) {
      expect((await diskBytes(path.join(target, name))).equals(expected[name]!.now)).toBe(true);
      expect((await diskBytes(path.join(target, name), `point-${k}`)).equals(expected[name]!.snap)).toBe(true);
    }
    const report = await withRepo(repoDir, 'shared', (repo) => checkRepository(repo, { readData: true }));
    expect([report.errors, report.leaks, report.failedBackups]).toEqual([[], [], []]);
  });

  it('restores one disk as a chain or flattened, and single files', async () => {
    const root = fresh();
    const dir = await makeChainVm(root, { sizes: [8 * MiB, 4 * MiB] });
    const repoDir = await newRepo(root);
    const b = await withRepo(repoDir, 'shared', (repo) => backupVm(repo, dir));
    expect(b.vm.consistency).toBe('crash-consistent');
    const expected = await diskBytes(path.join(dir, 'data1.chain'));
    const one = path.join(root, 'one');
    await withRepo(repoDir, false, (repo) => restoreVm(repo, b.id, { target: one, disks: ['scsi0:1'] }));
    expect(fs.readdirSync(one).filter((f) => f.endsWith('.chain'))).toEqual(['data1.chain']);
    expect((await diskBytes(path.join(one, 'data1.chain'))).equals(expected)).toBe(true);
    const flat = path.join(root, 'flat');
    await withRepo(repoDir, false, (repo) => restoreVm(repo, b.id, { target: flat, disks: ['data1.chain'], flatten: true }));
    expect(fs.readFileSync(path.join(flat, 'data1.raw')).equals(expected)).toBe(true);
    const cfg = path.join(root, 'cfg');
    await withRepo(repoDir, false, (repo) => restoreVm(repo, b.id, { target: cfg, files: ['web.vmx', 'web.nvram'] }));
    expect(fs.readdirSync(cfg).sort()).toEqual(['web.nvram', 'web.vmx']);
    expect(fs.readFileSync(path.join(cfg, 'web.vmx')).equals(fs.readFileSync(path.join(dir, 'web.vmx')))).toBe(true);
    await withRepo(repoDir, false, async (repo) => {
      expect(await codeOf(restoreVm(repo, b.id, { target: path.join(root, 'x'), disks: ['ide0:0'] }))).toBe('NOT_FOUND');
      expect(await codeOf(restoreVm(repo, b.id, { target: path.join(root, 'x'), files: ['nope.vmx'] }))).toBe('NOT_FOUND');
    });
  });

  it('backs up VMDK VMs (flat, and a two-deep snapshot chain) byte-identically', async () => {
    const root = fresh();
    const repoDir = await newRepo(root);
    for (const dir of [makeFlatVm(path.join(root, 'a')), makeTwoDiskChainVm(path.join(root, 'b'))]) {
      const before = snapshotTree(dir);
      const b = await withRepo(repoDir, 'shared', (repo) => backupVm(repo, dir));
      const inv = await inspectVm(dir);
      expect(b.vm.disks.map((d) => d.node)).toEqual(inv.disks.filter((d) => d.included).map((d) => d.node));
      for (const d of b.vm.disks) expect(d.entries.length).toBeGreaterThan(0);
      const target = path.join(root, `r-${b.id}`);
      await withRepo(repoDir, false, (repo) => restoreVm(repo, b.id, { target }));
      const after = snapshotTree(target);
      for (const f of inv.files) expect(after[f.name], f.name).toBe(before[f.name]);
      expect(Object.keys(after).sort()).toEqual(inv.files.map((f) => f.name).sort());
    }
  });

  it('a failing freeze hook in required mode aborts: thaw with freezeFail, no backup, no snapshot left', async () => {
    const root = fresh();
    const dir = await makeChainVm(root, { sizes: [4 * MiB] });
    const repoDir = await newRepo(root);
    const h = hooksDir(root);
    fs.writeFileSync(path.join(h.dir, '20-fails'), '#!/bin/sh\n[ "$1" = freeze ] && exit 7\nexit 0\n', { mode: 0o755 });
    await withRepo(repoDir, 'shared', async (repo) => expect(await codeOf(backupVm(repo, dir, { hooks: { hooksDir: h.dir } }))).toBe('HOOK_FAILED'));
    expect(h.events().map((e) => e.split(' ').slice(0, 2).join(' '))).toEqual(['db freeze', 'db freezeFail']);
    expect(await withRepo(repoDir, false, (repo) => repo.backupIds())).toEqual([]);
    expect(await captureNames(path.join(dir, 'system.chain'))).toEqual([]);

    // Optional mode goes on, crash-consistent, and says so.
    const b = await withRepo(repoDir, 'shared', (repo) => backupVm(repo, dir, { hooks: { hooksDir: h.dir, quiesce: 'optional' } }));
    expect(b.vm.consistency).toBe('crash-consistent');
    expect(b.vm.quiesce.quiesced).toBe(false);
    expect(b.vm.quiesce.failure).toMatch(/20-fails/);
    expect(b.vm.warnings.join('\n')).toMatch(/not quiesced/);
    const m = await withRepo(repoDir, false, (repo) => repo.loadManifest(b.id));
    expect(m.vm).toEqual(b.vm);
  });

  it('a backup that fails after the capture drops its own capture snapshot and keeps the previous one', async () => {
    const root = fresh();
    const dir = await makeChainVm(root, { sizes: [4 * MiB] });
    const repoDir = await newRepo(root);
    const first = await withRepo(repoDir, 'shared', (repo) => backupVm(repo, dir));
    // A clone the capture made is gone by the time the backup reads it (the thaw hook removes it): the backup fails whole.
    const h = hooksDir(root, `[ "$1" = thaw ] && rm -f "$DELTADISK_VM_DIR"/.deltadisk-capture-*/web.nvram; exit 0`);
    await withRepo(repoDir, 'shared', async (repo) => expect(await codeOf(backupVm(repo, dir, { hooks: { hooksDir: h.dir } }))).toBe('NOT_FOUND'));
    expect(h.events()).toHaveLength(2);
    expect(await captureNames(path.join(dir, 'system.chain'))).toEqual([`deltadisk-capture-${first.id}`]);
    expect(await withRepo(repoDir, false, (repo) => repo.backupIds())).toEqual([first.id]);
  });

  it('an abort during the copy stops it (INTERRUPTED): no backup, its own capture dropped, the previous one kept', async () => {
    const root = fresh();
    const dir = await makeChainVm(root, { sizes: [4 * MiB] });
    const repoDir = await newRepo(root);
    const first = await withRepo(repoDir, 'shared', (repo) => backupVm(repo, dir));
    const ac = new AbortController();
    expect(await codeOf(withRepo(repoDir, 'shared', (repo) => backupVm(repo, dir, { signal: ac.signal, onProgress: () => ac.abort() })))).toBe('INTERRUPTED');
    expect(await captureNames(path.join(dir, 'system.chain'))).toEqual([`deltadisk-capture-${first.id}`]);
    expect(fs.readdirSync(dir).filter((n) => n.startsWith('.deltadisk-capture-'))).toEqual([]);
    expect(await withRepo(repoDir, false, (repo) => repo.backupIds())).toEqual([first.id]);
  });

  it('a backup whose manifest cannot be written (the disks already reached for the cleanup) drops its own capture, leaves the previous one and no lock', async () => {
    const root = fresh();
    const dir = await makeChainVm(root, { sizes: [4 * MiB, 4 * MiB] });
    const repoDir = await newRepo(root);
    const first = await withRepo(repoDir, 'shared', (repo) => backupVm(repo, dir));
    const failing = new FaultFS(nodeFileSystem).fail({ op: 'create', path: (p) => p.includes(`${path.sep}snapshots${path.sep}`) });
    const repo = await Repository.open(repoDir, { fs: failing, lock: 'shared' });
    try {
      expect(await codeOf(backupVm(repo, dir))).toBe('IO_ERROR');
    } finally {
      await repo.close();
    }
    for (const disk of ['system.chain', 'data1.chain']) {
      expect(await captureNames(path.join(dir, disk))).toEqual([`deltadisk-capture-${first.id}`]);
      expect(fs.existsSync(path.join(dir, `${disk}.lock`))).toBe(false);
    }
    expect(await withRepo(repoDir, false, (r) => r.backupIds())).toEqual([first.id]);
    // And the next backup builds on the first.
    const next = await withRepo(repoDir, 'shared', (r) => backupVm(r, dir));
    expect(next.deletedSnapshots.length).toBe(2);
  });

  it('captures a chain disk served by another holder through its control channel', async () => {
    const root = fresh();
    const dir = await makeChainVm(root, { sizes: [8 * MiB] });
    const repoDir = await newRepo(root);
    const disk = await Disk.open(path.join(dir, 'system.chain'));
    const served = await serveDisk(disk, { listen: { host: '127.0.0.1', port: 0 } });
    try {
      await disk.write(MiB, Buffer.alloc(64 * 1024, 0x77));
      await disk.flush();
      const expected = Buffer.from(await disk.read(0, disk.virtualSize));
      const b = await withRepo(repoDir, 'shared', (repo) => backupVm(repo, dir));
      // The export runs on: writes after the capture are not in the backup.
      await disk.write(0, Buffer.alloc(64 * 1024, 0x11));
      const target = path.join(root, 'r');
      await withRepo(repoDir, false, (repo) => restoreVm(repo, b.id, { target }));
      expect((await diskBytes(path.join(target, 'system.chain'))).equals(expected)).toBe(true);
      expect(disk.snapshots().map((s) => s.name)).toEqual([`deltadisk-capture-${b.id}`]);
      // The next backup deletes the older capture through the channel too.
      const next = await withRepo(repoDir, 'shared', (repo) => backupVm(repo, dir));
      expect(next.deletedSnapshots).toEqual([`system.chain:deltadisk-capture-${b.id}`]);
      expect(next.warnings).toEqual([]);
      expect(disk.snapshots().map((s) => s.name)).toEqual([`deltadisk-capture-${next.id}`]);
    } finally {
      await served.close();
      await disk.close();
    }
  });

  it('the tricky VM: refused while it has problems; with them accepted, what is there is backed up, locks and swap left out, the outside disk renamed in', async () => {
    const root = fresh();
    const repoDir = await newRepo(root);
    const { dir, outsideDir } = makeTrickyVm(path.join(root, 'fx'));
    expect(await withRepo(repoDir, 'shared', async (repo) => codeOf(backupVm(repo, dir)))).toBe('VM_INVALID');
    expect(await withRepo(repoDir, false, (repo) => repo.backupIds())).toEqual([]);
    const b = await withRepo(repoDir, 'shared', (repo) => backupVm(repo, dir, { acceptProblems: true, allowPaths: [outsideDir] }));
    const names = b.manifest.entries.map((e) => e.path);
    expect(names).toContain(`${TRICKY_NAME}.vmx`);
    expect(names.some((n) => /\.lck$|\.vswp$|\.vmem$/.test(n))).toBe(false);
    expect(b.vm.outside.length).toBeGreaterThan(0);
    for (const o of b.vm.outside) {
      expect(o.entry).toMatch(/^outside-/);
      expect(o.path.startsWith(fs.realpathSync(outsideDir))).toBe(true);
      expect(names).toContain(o.entry);
    }
    const target = path.join(root, 'r');
    await withRepo(repoDir, false, (repo) => restoreVm(repo, b.id, { target }));
    for (const e of b.manifest.entries) {
      if (e.type !== 'file') continue;
      const original = b.vm.outside.find((o) => o.entry === e.path)?.path ?? path.join(dir, e.path);
      expect(fs.readFileSync(path.join(target, e.path)).equals(fs.readFileSync(original)), e.path).toBe(true);
    }
  });

  it('a block that fails its CRC stops the backup instead of being stored', async () => {
    const root = fresh();
    const dir = await makeChainVm(root, { sizes: [4 * MiB], writtenBlocks: 0 });
    const repoDir = await newRepo(root);
    const d = await Disk.open(path.join(dir, 'system.chain'));
    const marker = Buffer.alloc(64 * 1024, 0x3c);
    await d.write(MiB, marker);
    await d.close();
    const delta = path.join(dir, 'system-000001.delta');
    const bytes = fs.readFileSync(delta);
    const at = bytes.indexOf(marker);
    expect(at).toBeGreaterThan(0);
    bytes[at + 1000] = bytes[at + 1000]! ^ 0x01; // bit rot inside the stored block
    fs.writeFileSync(delta, bytes);
    expect(await withRepo(repoDir, 'shared', async (repo) => codeOf(backupVm(repo, dir)))).toBe('CHECKSUM_MISMATCH');
    expect(await withRepo(repoDir, false, (repo) => repo.backupIds())).toEqual([]);
    expect(await captureNames(path.join(dir, 'system.chain'))).toEqual([]);
  });

  it('restoreVm refuses a backup that is not of a VM', async () => {
    const root = fresh();
    const repoDir = await newRepo(root);
    fs.mkdirSync(path.join(root, 'plain'));
    fs.writeFileSync(path.join(root, 'plain', 'a'), 'a');
    const b = await withRepo(repoDir, 'shared', (repo) => backup(repo, [path.join(root, 'plain')]));
    await withRepo(repoDir, false, async (repo) => expect(await codeOf(restoreVm(repo, b.id, { target: path.join(root, 't') }))).toBe('INVALID_ARGUMENT'));
  });
});
