/**
 * Two VMDK disks whose chains share a parent (c.vmdk and d.vmdk both made from
 * a.vmdk): the VM record lists the shared files under both disks, so restoring
 * either disk alone brings back its complete chain.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Repository } from '../../lib/repo/repository.js';
import { backupVm } from '../../lib/vm/vm-backup.js';
import { restoreVm } from '../../lib/vm/vm-restore.js';
import { withRepo } from '../helpers/repo.js';
import { tempDir } from '../helpers/temp-dir.js';

const t = tempDir('dd-vm-shared-');
afterAll(t.cleanup);

function descriptor(cid: string, parentCid: string, parent: string | undefined, extent: string): string {
  return ['version=1', `CID=${cid}`, `parentCID=${parentCid}`, ...(parent === undefined ? [] : [`parentFileNameHint="${parent}"`]), 'createType="monolithicFlat"', `RW 8 FLAT "${extent}" 0`, ''].join('\n');
}

describe('VM backup of disks sharing a parent', () => {
  it('restoring either disk alone brings the shared parent', async () => {
    const dir = path.join(t.dir, 'vm');
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, 't.vmx'), 'scsi0:0.present = "TRUE"\nscsi0:0.fileName = "c.vmdk"\nscsi0:1.present = "TRUE"\nscsi0:1.fileName = "d.vmdk"\n');
    fs.writeFileSync(path.join(dir, 'a.vmdk'), descriptor('00000001', 'ffffffff', undefined, 'a-flat.vmdk'));
    fs.writeFileSync(path.join(dir, 'c.vmdk'), descriptor('00000002', '00000001', 'a.vmdk', 'c-flat.vmdk'));
    fs.writeFileSync(path.join(dir, 'd.vmdk'), descriptor('00000003', '00000001', 'a.vmdk', 'd-flat.vmdk'));
    for (const [name, byte] of [['a-flat.vmdk', 1], ['c-flat.vmdk', 2], ['d-flat.vmdk', 3]] as const) fs.writeFileSync(path.join(dir, name), Buffer.alloc(4096, byte));
    const repoDir = path.join(t.dir, 'repo');
    await Repository.init(repoDir);
    const b = await withRepo(repoDir, 'shared', (repo) => backupVm(repo, dir));
    const chain = ['a-flat.vmdk', 'a.vmdk'];
    expect([...b.vm.disks.find((d) => d.node === 'scsi0:0')!.entries].sort()).toEqual([...chain, 'c-flat.vmdk', 'c.vmdk']);
    expect([...b.vm.disks.find((d) => d.node === 'scsi0:1')!.entries].sort()).toEqual([...chain, 'd-flat.vmdk', 'd.vmdk']);
    for (const [node, own] of [['scsi0:0', 'c'], ['scsi0:1', 'd']] as const) {
      const target = path.join(t.dir, `restored-${own}`);
      await withRepo(repoDir, false, (repo) => restoreVm(repo, b.id, { target, disks: [node] }));
      expect(fs.readdirSync(target).sort()).toEqual([...chain, `${own}-flat.vmdk`, `${own}.vmdk`]);
      expect(fs.readFileSync(path.join(target, 'a-flat.vmdk'))).toEqual(Buffer.alloc(4096, 1));
    }
  });
});
