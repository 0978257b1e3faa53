import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { isDeltaDiskError } from '../../lib/errors.js';
import { nodeFileSystem } from '../../lib/io/node-file-system.js';
import { decodeSparseExtentHeader, identifyExtent } from '../../lib/vm/sparse-extent-header.js';
import { readVmdkFile } from '../../lib/vm/vmdk-reader.js';
import { cowdExtent, hostedSparseExtent, seSparseExtent } from '../../fixtures/make-fixtures.js';
import { propertyRuns, tempDir } from '../helpers/temp-dir.js';

const t = tempDir('dd-kdmv-');
afterAll(t.cleanup);
const DESC = '# Disk DescriptorFile\nversion=1\nCID=11223344\nparentCID=ffffffff\ncreateType="monolithicSparse"\nRW 131072 SPARSE "x.vmdk"\n';

function qemuImg(...args: string[]): void {
  execFileSync('qemu-img', args, { stdio: 'pipe' });
}

describe('hosted sparse extents', () => {
  it('reads the descriptor qemu-img embeds in monolithicSparse, child and streamOptimized images', async () => {
    const a = path.join(t.dir, 'q.vmdk');
    qemuImg('create', '-f', 'vmdk', a, '64M');
    const parent = await readVmdkFile(nodeFileSystem, a);
    expect(parent.descriptor).toMatchObject({ createType: 'monolithicSparse', capacity: 64 * 2 ** 20, parentCid: 'ffffffff' });
    expect(parent.sparseHeader).toMatchObject({ descriptorOffset: 1, descriptorSize: 20, grainSize: 128 });
    const c = path.join(t.dir, 'qc.vmdk');
    qemuImg('create', '-f', 'vmdk', '-b', 'q.vmdk', '-F', 'vmdk', c);
    const child = await readVmdkFile(nodeFileSystem, c);
    expect(child.descriptor.parentFileNameHint).toBe('q.vmdk');
    expect(child.descriptor.parentCid).toBe(parent.descriptor.cid);
    const s = path.join(t.dir, 'qs.vmdk');
    qemuImg('create', '-f', 'vmdk', '-o', 'subformat=streamOptimized', s, '64M');
    expect((await readVmdkFile(nodeFileSystem, s)).sparseHeader?.compressed).toBe(true);
  });

  it('our generator agrees with qemu-img about the layout', () => {
    const p = path.join(t.dir, 'ours.vmdk');
    fs.writeFileSync(p, hostedSparseExtent({ capacitySectors: 131072, descriptor: DESC.replace('x.vmdk', 'ours.vmdk') }));
    const info = JSON.parse(execFileSync('qemu-img', ['info', '--output=json', p], { encoding: 'utf8' })) as { 'virtual-size': number; format: string };
    expect(info).toMatchObject({ format: 'vmdk', 'virtual-size': 64 * 2 ** 20 });
  });

  it('refuses unsafe variants with typed errors', () => {
    const cases: [Buffer, string, RegExp][] = [
      [hostedSparseExtent({ capacitySectors: 1024, descriptor: DESC, magic: 'kdmv' }), 'VM_INVALID', /incomplete/],
      [hostedSparseExtent({ capacitySectors: 1024, descriptor: DESC, version: 4 }), 'UNSUPPORTED_VERSION', /version 4/],
      [hostedSparseExtent({ capacitySectors: 1024, descriptor: DESC, flags: 0x3 | 0x40000 }), 'UNSUPPORTED_VERSION', /incompatible flags 0x40000/],
      [hostedSparseExtent({ capacitySectors: 1024, descriptor: DESC, gdAtEnd: true }), 'UNSUPPORTED', /at the end/],
      [hostedSparseExtent({ capacitySectors: 1024, descriptor: DESC, descriptorOffset: 2 }), 'VM_INVALID', /sector 1/],
      [hostedSparseExtent({ capacitySectors: 1024, descriptor: DESC, descriptorSectors: 2048 }), 'LIMIT_EXCEEDED', /exceeds 2047/],
      [hostedSparseExtent({ capacitySectors: 1024, descriptor: DESC, grainSize: 3 }), 'VM_INVALID', /power of two/],
    ];
    for (const [b, code, why] of cases) {
      expect(() => decodeSparseExtentHeader(b, b.length), String(why)).toThrow(expect.objectContaining({ code, message: expect.stringMatching(why) }));
    }
    const good = hostedSparseExtent({ capacitySectors: 1024, descriptor: DESC });
    expect(() => decodeSparseExtentHeader(good, 4096)).toThrow(expect.objectContaining({ code: 'TRUNCATED' }));
    const overlap = Buffer.from(good);
    overlap.writeBigUInt64LE(10n, 56);
    expect(() => decodeSparseExtentHeader(overlap, overlap.length)).toThrow(/overlaps/);
    const mangled = Buffer.from(good);
    mangled[75] = 0x0a;
    expect(() => decodeSparseExtentHeader(mangled, mangled.length)).toThrow(/newline-detection/);
    const huge = Buffer.from(good);
    huge.writeBigUInt64LE(2n ** 63n, 12);
    expect(() => decodeSparseExtentHeader(huge, huge.length)).toThrow(/capacity/);
  });

  it('tells extent kinds apart and will not read a COWD delta as a descriptor', async () => {
    expect(identifyExtent(cowdExtent(100))).toBe('cowd');
    expect(identifyExtent(seSparseExtent(100))).toBe('sesparse');
    expect(identifyExtent(hostedSparseExtent({ capacitySectors: 128 }))).toBe('kdmv');
    const p = path.join(t.dir, 'x-delta.vmdk');
    fs.writeFileSync(p, cowdExtent(100));
    await expect(readVmdkFile(nodeFileSystem, p)).rejects.toThrow(/COWD delta extent, not a descriptor/);
    const split = path.join(t.dir, 'x-s001.vmdk');
    fs.writeFileSync(split, hostedSparseExtent({ capacitySectors: 128 }));
    await expect(readVmdkFile(nodeFileSystem, split)).rejects.toThrow(/without an embedded descriptor/);
    const big = path.join(t.dir, 'big.vmdk');
    fs.writeFileSync(big, '');
    fs.truncateSync(big, 2 * 2 ** 20);
    await expect(readVmdkFile(nodeFileSystem, big)).rejects.toThrow(/too large for a text descriptor/);
  });

  it('any corruption of a header: decoded or a typed error, never a crash', () => {
    const good = hostedSparseExtent({ capacitySectors: 4096, descriptor: DESC });
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.nat(95), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 6 }), (flips) => {
        const b = Buffer.from(good);
        for (const [at, v] of flips) b[at] = v;
        try {
          const h = decodeSparseExtentHeader(b, b.length);
          if (h.descriptorOffset !== 0) expect((h.descriptorOffset + h.descriptorSize) * 512).toBeLessThanOrEqual(b.length);
        } catch (err) {
          expect(isDeltaDiskError(err)).toBe(true);
        }
      }),
      { numRuns: propertyRuns(1000) },
    );
  });
});
