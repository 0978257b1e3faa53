import fs from 'node:fs';
import path from 'node:path';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { isDeltaDiskError } from '../../lib/errors.js';
import { parseVmx } from '../../lib/vm/vmx-file.js';
import { makeFlatVm, makeTrickyVm, TRICKY_NAME } from '../../fixtures/make-fixtures.js';
import { propertyRuns, tempDir } from '../helpers/temp-dir.js';

const t = tempDir('dd-vmx-');
afterAll(t.cleanup);

describe('parseVmx', () => {
  it('reads the tricky fixture: escapes, mixed-case keys, absent and non-disk devices, independent mode', () => {
    const { dir, outsideDir } = makeTrickyVm(t.dir);
    const vmx = parseVmx(fs.readFileSync(path.join(dir, `${TRICKY_NAME}.vmx`)));
    expect(vmx.displayName).toBe('Büro "Haupt" Server 2 – Ω');
    expect(vmx.cleanShutdown).toBe(false);
    expect(vmx.suspendState).toBeUndefined();
    expect(vmx.nvram).toBe(`${TRICKY_NAME}.nvram`);
    expect(vmx.disks.map((d) => [d.node, d.fileName, d.independent])).toEqual([
      ['scsi0:0', `${TRICKY_NAME}-000001.vmdk`, false],
      ['scsi0:1', path.join(outsideDir, 'archive data.vmdk'), false],
      ['scsi0:2', 'data-000001.vmdk', false],
      ['scsi0:3', 'scratch.vmdk', true],
    ]);
    expect(vmx.otherDevices.map((d) => d.node)).toEqual(['sata0:0']);
  });

  it('ignores CD-ROM images and keeps only present devices on present controllers', () => {
    const dir = makeFlatVm(t.dir);
    const vmx = parseVmx(fs.readFileSync(path.join(dir, 'alpine-web.vmx')));
    expect(vmx.disks.map((d) => d.fileName)).toEqual(['alpine-web.vmdk']);
    expect(vmx.otherDevices[0]?.deviceType).toBe('cdrom-image');
    const off = parseVmx(Buffer.from('scsi1.present = "FALSE"\nscsi1:0.present = "TRUE"\nscsi1:0.fileName = "x.vmdk"\nide1:0.present = "TRUE"\nide1:0.fileName = "d.chain"\n'));
    expect(off.disks.map((d) => [d.node, d.format])).toEqual([['ide1:0', 'chain']]);
  });

  it('orders nodes numerically and reads suspend state', () => {
    const vmx = parseVmx(Buffer.from('scsi0:10.present="TRUE"\nscsi0:10.fileName="b.vmdk"\nscsi0:2.present="TRUE"\nscsi0:2.fileName="a.vmdk"\ncheckpoint.vmState = "x-1.vmss"\n'));
    expect(vmx.disks.map((d) => d.node)).toEqual(['scsi0:2', 'scsi0:10']);
    expect(vmx.suspendState).toBe('x-1.vmss');
  });

  it('bounds the size and survives arbitrary lines', () => {
    expect(() => parseVmx(Buffer.alloc(1024 * 1024 + 1, 0x20))).toThrow(expect.objectContaining({ code: 'LIMIT_EXCEEDED' }));
    const line = fc.oneof(fc.string({ maxLength: 40 }), fc.constantFrom('scsi0:0.present = "TRUE"', 'scsi0:0.fileName = "a.vmdk"', 'scsi0:0.mode = "independent-persistent"', 'scsi0.present = "FALSE"'));
    fc.assert(
      fc.property(fc.array(line, { maxLength: 20 }), (lines) => {
        try {
          const vmx = parseVmx(Buffer.from(lines.join('\n')));
          for (const d of vmx.disks) expect(d.fileName.length).toBeGreaterThan(0);
        } catch (err) {
          expect(isDeltaDiskError(err)).toBe(true);
        }
      }),
      { numRuns: propertyRuns(300) },
    );
  });
});
