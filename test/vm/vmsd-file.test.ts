import fs from 'node:fs';
import path from 'node:path';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { isDeltaDiskError } from '../../lib/errors.js';
import { decodeCreateTime, encodeCreateTime, encodeVmsd, parseVmsd } from '../../lib/vm/vmsd-file.js';
import { makeTwoDiskChainVm } from '../../fixtures/make-fixtures.js';
import { propertyRuns, tempDir } from '../helpers/temp-dir.js';

const t = tempDir('dd-vmsd-');
afterAll(t.cleanup);

describe('parseVmsd', () => {
  it('reads the two-snapshot fixture: tree, current, disks, creation times', () => {
    const dir = makeTwoDiskChainVm(t.dir);
    const v = parseVmsd(fs.readFileSync(path.join(dir, 'db01.vmsd')));
    expect(v.issues).toEqual([]);
    expect(v.current).toBe(2);
    expect(v.snapshots.map((s) => [s.uid, s.parent, s.displayName])).toEqual([
      [1, undefined, 'before-pg-upgrade'],
      [2, 1, 'after-pg-upgrade'],
    ]);
    expect(v.snapshots[1]!.disks).toEqual([
      { node: 'scsi0:0', fileName: 'db01-000001.vmdk', chainSnapshot: undefined },
      { node: 'scsi0:1', fileName: 'db01_1-000001.vmdk', chainSnapshot: undefined },
    ]);
    expect(v.snapshots[0]!.created).toBe('2024-03-14T09:26:53.000Z');
    expect(v.snapshots[1]!.created).toBe('2024-03-15T17:02:11.000Z');
  });

  it('decodes the documented createTime example and round-trips times', () => {
    expect(decodeCreateTime('310880', '-365210110')?.slice(0, 19)).toBe('2012-04-23T23:22:42');
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 4102444800000 }), (ms) => {
        const iso = new Date(ms).toISOString();
        const { high, low } = encodeCreateTime(iso);
        expect(decodeCreateTime(high, low)).toBe(iso);
        expect(Math.abs(Number(low))).toBeLessThanOrEqual(2 ** 31);
      }),
      { numRuns: propertyRuns(200) },
    );
  });

  it('treats slot indices as positions: uid ≠ slot, slots past 9 do not mix', () => {
    const lines = ['snapshot.lastUID = "40"', 'snapshot.current = "15"'];
    for (let slot = 0; slot < 12; slot++) {
      lines.push(`snapshot${slot}.uid = "${slot + 5}"`, `snapshot${slot}.displayName = "s${slot}"`);
      if (slot > 0) lines.push(`snapshot${slot}.parent = "${slot + 4}"`);
    }
    const v = parseVmsd(Buffer.from(lines.join('\n')));
    expect(v.snapshots).toHaveLength(12);
    expect(v.snapshots.find((s) => s.uid === 6)?.displayName).toBe('s1');
    expect(v.snapshots.find((s) => s.uid === 15)?.displayName).toBe('s10');
    expect(v.snapshots.find((s) => s.uid === 15)?.parent).toBe(14);
    expect(v.issues).toEqual([]);
  });

  it('lists inconsistencies instead of guessing', () => {
    const v = parseVmsd(
      Buffer.from(
        ['snapshot.lastUID = "1"', 'snapshot.current = "9"', 'snapshot.numSnapshots = "5"', 'snapshot0.uid = "2"', 'snapshot0.parent = "3"', 'snapshot1.uid = "3"', 'snapshot1.parent = "2"', 'snapshot2.uid = "4"', 'snapshot4.uid = "4"', 'snapshot3.displayName = "no uid"'].join('\n'),
      ),
    );
    const text = v.issues.join('\n');
    expect(text).toMatch(/uid 4 is used by more than one/);
    expect(text).toMatch(/cycle/);
    expect(text).toMatch(/numSnapshots says 5, the file holds 4/);
    expect(text).toMatch(/current names the unknown uid 9/);
    expect(text).toMatch(/lastUID 1 is below/);
    expect(text).toMatch(/snapshot3 has no valid uid/);
  });

  it('an empty file is a VM never snapshotted', () => {
    const v = parseVmsd(Buffer.alloc(0));
    expect(v.snapshots).toEqual([]);
    expect(v.lastUID).toBe(0);
  });

  it('encode → parse keeps the tree, chain snapshot ids and unknown keys', () => {
    const dir = makeTwoDiskChainVm(t.dir);
    const v = parseVmsd(Buffer.concat([fs.readFileSync(path.join(dir, 'db01.vmsd')), Buffer.from('snapshot.mru0.uid = "2"\nsnapshot1.clone0 = "x"\n')]));
    const withChain = { ...v, snapshots: v.snapshots.map((s) => ({ ...s, disks: s.disks.map((d) => ({ ...d, chainSnapshot: `id-${s.uid}` })) })) };
    const again = parseVmsd(encodeVmsd(withChain));
    expect(again.snapshots.map(({ uid, parent, displayName, description, created, disks }) => ({ uid, parent, displayName, description, created, disks }))).toEqual(
      withChain.snapshots.map(({ uid, parent, displayName, description, created, disks }) => ({ uid, parent, displayName, description, created, disks })),
    );
    expect(again.extra).toEqual([['snapshot.mru0.uid', '2']]);
    expect(again.snapshots[1]!.extra).toEqual([['clone0', 'x']]);
    expect(again.issues).toEqual([]);
  });

  it('bounds record counts and survives arbitrary input', () => {
    const many = Array.from({ length: 4097 }, (_, i) => `snapshot${i}.uid = "${i + 1}"`).join('\n');
    expect(() => parseVmsd(Buffer.from(many))).toThrow(expect.objectContaining({ code: 'LIMIT_EXCEEDED' }));
    const line = fc.oneof(
      fc.string({ maxLength: 30 }),
      fc.tuple(fc.integer({ min: 0, max: 20 }), fc.constantFrom('uid', 'parent', 'disk0.fileName', 'disk0.node', 'createTimeHigh', 'createTimeLow'), fc.oneof(fc.integer({ min: -5, max: 30 }).map(String), fc.string({ maxLength: 8 }))).map(([s, k, v]) => `snapshot${s}.${k} = "${v}"`),
    );
    fc.assert(
      fc.property(fc.array(line, { maxLength: 30 }), (lines) => {
        try {
          const v = parseVmsd(Buffer.from(lines.join('\n')));
          parseVmsd(encodeVmsd(v));
        } catch (err) {
          expect(isDeltaDiskError(err)).toBe(true);
        }
      }),
      { numRuns: propertyRuns(300) },
    );
  });
});
