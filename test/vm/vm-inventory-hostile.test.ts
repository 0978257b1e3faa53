import fs from 'node:fs';
import path from 'node:path';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { inspectVm } from '../../lib/vm/vm-inventory.js';
import { isInside } from '../../lib/vm/vm-reference.js';
import { cowdExtent, descriptorText, hostedSparseExtent } from '../../fixtures/make-fixtures.js';
import { propertyRuns, tempDir } from '../helpers/temp-dir.js';

const t = tempDir('dd-hostile-');
afterAll(t.cleanup);
let n = 0;

const REFS = ['a.vmdk', 'b.vmdk', 'c.vmdk', './a.vmdk', 'x/../b.vmdk', '../outside/secret', '../outside/o.vmdk', 'link.vmdk', 'dirlink/secret', '/etc/passwd', 'json:{"file":"/etc/passwd"}', 'nbd://host/x', 'a\u0001.vmdk', 'missing.vmdk', 'a-flat.vmdk', 'd.chain', ''];
const ref = fc.constantFrom(...REFS);
const TYPES = ['FLAT', 'VMFS', 'SPARSE', 'VMFSSPARSE', 'SESPARSE', 'ZERO', 'VMFSRDM'];

const descriptor = fc.record({
  cid: fc.constantFrom('11111111', '22222222', 'ffffffff'),
  parent: fc.option(fc.tuple(fc.constantFrom('11111111', '22222222'), ref), { nil: undefined }),
  extents: fc.array(fc.tuple(fc.constantFrom(...TYPES), ref, fc.integer({ min: 1, max: 4096 })), { minLength: 1, maxLength: 3 }),
  embed: fc.boolean(),
  flips: fc.array(fc.tuple(fc.nat(400), fc.integer({ min: 0, max: 255 })), { maxLength: 3 }),
});

describe('inspectVm on hostile directories', () => {
  it('never reads or includes anything outside the VM directory, and never fails on a readable vmx', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(ref, { minLength: 1, maxLength: 3 }), fc.dictionary(fc.constantFrom('a.vmdk', 'b.vmdk', 'c.vmdk'), descriptor), async (disks, files) => {
        const root = path.join(t.dir, `h${n++}`);
        const dir = path.join(root, 'vm');
        const outside = path.join(root, 'outside');
        fs.mkdirSync(dir, { recursive: true });
        fs.mkdirSync(outside);
        fs.writeFileSync(path.join(outside, 'secret'), 'top secret');
        fs.writeFileSync(path.join(outside, 'o.vmdk'), descriptorText({ cid: '33333333', createType: 'monolithicFlat', extents: ['RW 8 FLAT "secret" 0'] }));
        fs.symlinkSync(path.join(outside, 'o.vmdk'), path.join(dir, 'link.vmdk'));
        fs.symlinkSync(outside, path.join(dir, 'dirlink'));
        fs.writeFileSync(path.join(dir, 'a-flat.vmdk'), Buffer.alloc(4096));
        fs.writeFileSync(path.join(dir, 'vm.vmx'), disks.map((d, i) => `scsi0:${i}.present = "TRUE"\nscsi0:${i}.fileName = "${d.replace(/"/g, '|22')}"\n`).join(''));
        for (const [name, d] of Object.entries(files)) {
          const text = descriptorText({
            cid: d.cid,
            createType: 'custom',
            ...(d.parent === undefined ? {} : { parentCid: d.parent[0], hint: d.parent[1] }),
            extents: d.extents.map(([type, file, sectors]) => (type === 'ZERO' ? `RW ${sectors} ZERO` : `RW ${sectors} ${type} "${file}"${type === 'FLAT' ? ' 0' : ''}`)),
          });
          let bytes = d.embed ? hostedSparseExtent({ capacitySectors: 4096, descriptor: text }) : Buffer.from(text);
          bytes = Buffer.from(bytes);
          for (const [at, v] of d.flips) if (at < bytes.length) bytes[at] = v;
          fs.writeFileSync(path.join(dir, name), bytes);
        }
        if (Object.keys(files).length === 0) fs.writeFileSync(path.join(dir, 'c.vmdk'), cowdExtent(64));
        const inv = await inspectVm(dir);
        const real = fs.realpathSync(dir);
        for (const f of inv.files) {
          expect(isInside(real, f.path), f.path).toBe(true);
          expect(fs.realpathSync(f.path).startsWith(fs.realpathSync(outside))).toBe(false);
        }
        for (const p of inv.problems) expect(p.message).not.toMatch(/top secret/);
      }),
      { numRuns: propertyRuns(60) },
    );
  });
});
