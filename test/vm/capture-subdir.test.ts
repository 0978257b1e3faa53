/**
 * A disk kept in a subdirectory of the VM directory (`disks/a.vmdk`) is captured
 * like any other: its files are cloned to the same place below the capture
 * directory, whose subdirectories the capture creates.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { captureVm } from '../../lib/vm/capture-vm.js';
import type { CapturedFile } from '../../lib/vm/capture-types.js';
import { isInside } from '../../lib/vm/vm-reference.js';
import { tempDir } from '../helpers/temp-dir.js';

const t = tempDir('dd-capture-subdir-');
afterAll(t.cleanup);

describe('captureVm with a disk in a subdirectory', () => {
  it('clones disks/a.vmdk and disks/a-flat.vmdk into <capture>/disks/', async () => {
    const dir = path.join(t.dir, 'vm');
    fs.mkdirSync(path.join(dir, 'disks'), { recursive: true });
    fs.writeFileSync(path.join(dir, 't.vmx'), 'scsi0:0.present = "TRUE"\nscsi0:0.fileName = "disks/a.vmdk"\n');
    fs.writeFileSync(path.join(dir, 'disks', 'a.vmdk'), 'version=1\nCID=00000001\nparentCID=ffffffff\ncreateType="monolithicFlat"\nRW 8 FLAT "a-flat.vmdk" 0\n');
    const data = Buffer.alloc(4096, 0x5a);
    fs.writeFileSync(path.join(dir, 'disks', 'a-flat.vmdk'), data);
    const cap = await captureVm(dir, { id: 'sub1' });
    try {
      const files = cap.items.filter((i): i is CapturedFile => i.type === 'file');
      const flat = files.find((f) => f.name === path.join('disks', 'a-flat.vmdk'));
      expect(flat).toBeDefined();
      expect(flat!.path).toBe(path.join(cap.captureDir, 'disks', 'a-flat.vmdk'));
      expect(isInside(cap.captureDir, flat!.path)).toBe(true);
      expect(fs.readFileSync(flat!.path)).toEqual(data);
      expect(files.map((f) => f.name).sort()).toEqual([path.join('disks', 'a-flat.vmdk'), path.join('disks', 'a.vmdk'), 't.vmx']);
    } finally {
      await cap.release();
    }
    expect(fs.existsSync(cap.captureDir)).toBe(false);
  });
});
