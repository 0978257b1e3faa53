/**
 * The chain descriptor (docs/FORMAT.md, "Descriptor"): a round trip for any valid
 * tree, the checksum recipe as documented, and one hand-written descriptor per
 * validation rule. Invalid descriptors carry a checksum computed here by the
 * documented recipe, so each test fails on its rule and not on the checksum.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { isDeltaDiskError } from '../../lib/errors.js';
import { decodeDescriptor, encodeDescriptor, isValidSnapshotName, type Descriptor } from '../../lib/format/descriptor.js';
import { MAX_DEPTH, MAX_LAYERS, MAX_SNAPSHOTS, MAX_VIRTUAL_SIZE } from '../../lib/format/limits.js';
import { withChecksum as checksummed } from '../helpers/canonical-json.js';
import { codeOfSync } from '../helpers/errors.js';
import { propertyRuns } from '../helpers/temp-dir.js';

const FIELDS = ['format', 'version', 'diskId', 'generation', 'virtualSize', 'blockSize', 'dedup', 'base', 'nextLayer', 'active', 'layers', 'snapshots'];

const withChecksum = (o: Record<string, unknown>): string => checksummed(FIELDS, o);

const id = (n: number) => `${n.toString(16).padStart(8, '0')}-0000-4000-8000-000000000000`;
const L1 = id(1);
const L2 = id(2);
const L3 = id(3);

function valid(): Record<string, unknown> {
  return {
    format: 'deltadisk-chain',
    version: 1,
    diskId: id(0xd15c),
    generation: 3,
    virtualSize: 1 << 30,
    blockSize: 65536,
    dedup: true,
    base: null,
    nextLayer: 4,
    active: L3,
    layers: [
      { id: L1, file: 'disk-000001.delta', parent: null, created: 't1' },
      { id: L2, file: 'disk-000002.delta', parent: L1, created: 't2' },
      { id: L3, file: 'disk-000003.delta', parent: L2, created: 't3' },
    ],
    snapshots: [
      { id: id(0x51), name: 'one', description: 'first', created: 't1', layer: L1 },
      { id: id(0x52), name: 'two', description: '', created: 't2', layer: L2 },
    ],
  };
}


const check = (o: Record<string, unknown>) => codeOfSync(() => decodeDescriptor(withChecksum(o), '/d/disk.chain'));
const withPatch = (patch: Record<string, unknown>) => check({ ...valid(), ...patch });
const layers = () => valid().layers as Record<string, unknown>[];
const snaps = () => valid().snapshots as Record<string, unknown>[];

/** Valid trees: each layer hangs below an earlier one; the active layer is a leaf. */
const descriptorArb: fc.Arbitrary<Descriptor> = fc
  .record({
    parents: fc.array(fc.nat(), { minLength: 0, maxLength: 15 }),
    virtualSize: fc.integer({ min: 1, max: MAX_VIRTUAL_SIZE }),
    blockSize: fc.integer({ min: 12, max: 20 }).map((e) => 2 ** e),
    dedup: fc.boolean(),
    base: fc.option(
      fc.record({
        file: fc.string({ minLength: 1, maxLength: 40 }),
        size: fc.integer({ min: 1, max: MAX_VIRTUAL_SIZE }),
        fingerprint: fc.stringMatching(/^[0-9a-f]{64}$/),
      }),
      { nil: null },
    ),
    generation: fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }),
    snapChance: fc.array(fc.boolean(), { minLength: 16, maxLength: 16 }),
    names: fc.uniqueArray(fc.string({ minLength: 1, maxLength: 20 }).filter(isValidSnapshotName), { minLength: 16, maxLength: 16 }),
    description: fc.string({ maxLength: 50 }),
  })
  .map((r) => {
    const ids = [id(1), ...r.parents.map((_, i) => id(i + 2))];
    const layerList = ids.map((lid, i) => ({
      id: lid,
      file: `d-${String(i + 1).padStart(6, '0')}.delta`,
      parent: i === 0 ? null : ids[r.parents[i - 1]! % i]!,
      created: `t${i}`,
    }));
    const hasChild = new Set(layerList.map((l) => l.parent));
    const leaves = layerList.filter((l) => !hasChild.has(l.id));
    const active = leaves[leaves.length - 1]!.id;
    const snapshots = layerList
      .filter((l, i) => l.id !== active && r.snapChance[i])
      .map((l, i) => ({ id: id(0x1000 + i), name: r.names[i]!, description: r.description, created: `s${i}`, layer: l.id }));
    return {
      diskId: id(0xd15c),
      generation: r.generation,
      virtualSize: r.virtualSize,
      blockSize: r.blockSize,
      dedup: r.dedup,
      base: r.base,
      nextLayer: ids.length + 1,
      active,
      layers: layerList,
      snapshots,
    };
  });

describe('descriptor round trip', () => {
  it('decodes what it encodes, for any valid tree', () => {
    fc.assert(
      fc.property(descriptorArb, (d) => {
        expect(decodeDescriptor(encodeDescriptor(d).toString('utf8'))).toEqual(d);
      }),
      { numRuns: propertyRuns(200) },
    );
  });

  it('is human-readable JSON whose checksum follows the documented recipe', () => {
    const text = encodeDescriptor(decodeDescriptor(withChecksum(valid()))).toString('utf8');
    expect(text).toContain('\n  "format": "deltadisk-chain"');
    expect(text.endsWith('\n')).toBe(true);
    const parsed = JSON.parse(text) as Record<string, unknown>;
    expect(JSON.parse(withChecksum(valid())).checksum).toBe(parsed.checksum);
  });

  it('ignores whitespace and unknown extra fields outside the canonical form', () => {
    const text = JSON.stringify(JSON.parse(withChecksum(valid())), null, 8);
    expect(decodeDescriptor(text).layers).toHaveLength(3);
  });

  it('a change to any covered field without a new checksum is CHECKSUM_MISMATCH', () => {
    const good = JSON.parse(withChecksum(valid())) as Record<string, unknown>;
    for (const [k, v] of Object.entries({ generation: 4, virtualSize: 2 ** 31, dedup: false, nextLayer: 5 })) {
      expect(codeOfSync(() => decodeDescriptor(JSON.stringify({ ...good, [k]: v }))), k).toBe('CHECKSUM_MISMATCH');
    }
    const renamed = JSON.parse(JSON.stringify(good)) as { snapshots: { name: string }[] };
    renamed.snapshots[0]!.name = 'renamed';
    expect(codeOfSync(() => decodeDescriptor(JSON.stringify(renamed)))).toBe('CHECKSUM_MISMATCH');
    expect(codeOfSync(() => decodeDescriptor(JSON.stringify({ ...good, checksum: undefined })))).toBe('CHECKSUM_MISMATCH');
  });
});

describe('descriptor validation: one rule each', () => {
  it('accepts the valid base case', () => {
    expect(check(valid())).toBe('ok');
  });

  it('text that is not JSON', () => {
    expect(codeOfSync(() => decodeDescriptor('{"format": '))).toBe('CHAIN_CORRUPT');
    expect(codeOfSync(() => decodeDescriptor(''))).toBe('CHAIN_CORRUPT');
  });

  it('JSON that is not an object', () => {
    for (const t of ['[]', 'null', '42', '"deltadisk-chain"']) expect(codeOfSync(() => decodeDescriptor(t)), t).toBe('CHAIN_CORRUPT');
  });

  it('another format', () => {
    expect(withPatch({ format: 'qcow2' })).toBe('CHAIN_CORRUPT');
  });

  it('another version', () => {
    expect(withPatch({ version: 3 })).toBe('UNSUPPORTED_VERSION');
    // Version 2 is the one with bookmarks: claimed without any, it does not match.
    expect(withPatch({ version: 2 })).toBe('CHAIN_CORRUPT');
    expect(withPatch({ version: '1' })).toBe('UNSUPPORTED_VERSION');
  });

  it('an invalid disk id', () => {
    expect(withPatch({ diskId: 'X' })).toBe('CHAIN_CORRUPT');
  });

  it('an invalid generation', () => {
    for (const generation of [0, -1, 1.5, '3']) expect(withPatch({ generation }), String(generation)).toBe('CHAIN_CORRUPT');
  });

  it('an invalid virtual size', () => {
    for (const virtualSize of [0, MAX_VIRTUAL_SIZE + 1, 1.5]) expect(withPatch({ virtualSize }), String(virtualSize)).toBe('CHAIN_CORRUPT');
  });

  it('an invalid block size', () => {
    for (const blockSize of [2048, 4095, 2 ** 21, 2 ** 31]) expect(withPatch({ blockSize }), String(blockSize)).toBe('CHAIN_CORRUPT');
  });

  it('a dedup flag that is not a boolean', () => {
    expect(withPatch({ dedup: 'yes' })).toBe('CHAIN_CORRUPT');
  });

  it('an invalid base', () => {
    const base = { file: 'base.raw', size: 1 << 30, fingerprint: 'a'.repeat(64) };
    expect(withPatch({ base })).toBe('ok');
    expect(withPatch({ base: 'base.raw' })).toBe('CHAIN_CORRUPT');
    expect(withPatch({ base: { ...base, file: '' } })).toBe('CHAIN_CORRUPT');
    expect(withPatch({ base: { ...base, file: 'x'.repeat(4097) } })).toBe('CHAIN_CORRUPT');
    expect(withPatch({ base: { ...base, size: 0 } })).toBe('CHAIN_CORRUPT');
    expect(withPatch({ base: { ...base, fingerprint: 'A'.repeat(64) } })).toBe('CHAIN_CORRUPT');
    expect(withPatch({ base: { ...base, fingerprint: 'a'.repeat(63) } })).toBe('CHAIN_CORRUPT');
  });

  it('an invalid next layer number', () => {
    expect(withPatch({ nextLayer: 0 })).toBe('CHAIN_CORRUPT');
    expect(withPatch({ nextLayer: 10 ** 12 + 1 })).toBe('CHAIN_CORRUPT');
  });

  it('an invalid active id', () => {
    expect(withPatch({ active: null })).toBe('CHAIN_CORRUPT');
  });

  it('layers that are not a list, or none', () => {
    expect(withPatch({ layers: {} })).toBe('CHAIN_CORRUPT');
    expect(withPatch({ layers: [] })).toBe('CHAIN_CORRUPT');
  });

  it('more layers than the limit', () => {
    const many = Array.from({ length: MAX_LAYERS + 1 }, (_, i) => ({ id: id(i + 1), file: `f${i}`, parent: null, created: '' }));
    expect(withPatch({ layers: many, active: id(1), snapshots: [] })).toBe('LIMIT_EXCEEDED');
  });

  it('snapshots that are not a list', () => {
    expect(withPatch({ snapshots: null })).toBe('CHAIN_CORRUPT');
  });

  it('more snapshots than the limit', () => {
    const many = Array.from({ length: MAX_SNAPSHOTS + 1 }, (_, i) => ({ id: id(i + 100), name: `s${i}`, description: '', created: '', layer: L1 }));
    expect(withPatch({ snapshots: many })).toBe('LIMIT_EXCEEDED');
  });

  it('a layer entry that is not an object', () => {
    expect(withPatch({ layers: [...layers(), 'x'] })).toBe('CHAIN_CORRUPT');
  });

  it('a layer with an invalid id', () => {
    const l = layers();
    l[0] = { ...l[0], id: 'nope' };
    expect(withPatch({ layers: l })).toBe('CHAIN_CORRUPT');
  });

  it('a layer file that is not a plain name is UNSAFE_PATH', () => {
    for (const file of ['../escape.delta', 'sub/x.delta', '/abs.delta', '.', '..', '', 'a\\b', 'a\nb', 'a\u0000b', 'x'.repeat(256), 7]) {
      const l = layers();
      l[2] = { ...l[2], file };
      expect(withPatch({ layers: l }), JSON.stringify(file)).toBe('UNSAFE_PATH');
    }
  });

  it('a layer with an invalid parent', () => {
    const l = layers();
    l[1] = { ...l[1], parent: 'x' };
    expect(withPatch({ layers: l })).toBe('CHAIN_CORRUPT');
  });

  it('a layer that is its own parent', () => {
    const l = layers();
    l[1] = { ...l[1], parent: L2 };
    expect(withPatch({ layers: l })).toBe('CHAIN_CORRUPT');
  });

  it('a layer with an invalid creation time', () => {
    const l = layers();
    l[1] = { ...l[1], created: 'x'.repeat(65) };
    expect(withPatch({ layers: l })).toBe('CHAIN_CORRUPT');
  });

  it('a layer listed twice', () => {
    const l = layers();
    expect(withPatch({ layers: [...l, { ...l[2], file: 'other.delta' }] })).toBe('CHAIN_CORRUPT');
  });

  it('two layers sharing a file', () => {
    const l = layers();
    l[1] = { ...l[1], file: 'disk-000001.delta' };
    expect(withPatch({ layers: l })).toBe('CHAIN_CORRUPT');
  });

  it('a parent that is not listed', () => {
    const l = layers();
    l[1] = { ...l[1], parent: id(0x99) };
    expect(withPatch({ layers: l })).toBe('CHAIN_CORRUPT');
  });

  it('a cycle', () => {
    const l = layers();
    l[0] = { ...l[0], parent: L2 }; // L1 → L2 → L1; L3 hangs below it
    expect(withPatch({ layers: l })).toBe('CHAIN_CORRUPT');
  });

  it('a cycle not reachable from the active layer', () => {
    const a = id(0xa);
    const b = id(0xb);
    const l = [...layers(), { id: a, file: 'a', parent: b, created: '' }, { id: b, file: 'b', parent: a, created: '' }];
    expect(withPatch({ layers: l })).toBe('CHAIN_CORRUPT');
  });

  it('a chain deeper than the limit', () => {
    const deep = Array.from({ length: MAX_DEPTH + 1 }, (_, i) => ({ id: id(i + 1), file: `f${i}`, parent: i === 0 ? null : id(i), created: '' }));
    expect(withPatch({ layers: deep, active: id(MAX_DEPTH + 1), snapshots: [] })).toBe('LIMIT_EXCEEDED');
    expect(withPatch({ layers: deep.slice(0, MAX_DEPTH), active: id(MAX_DEPTH), snapshots: [] })).toBe('ok');
  });

  it('an active layer that is not listed', () => {
    expect(withPatch({ active: id(0x77) })).toBe('CHAIN_CORRUPT');
  });

  it('an active layer with children', () => {
    expect(withPatch({ active: L2, snapshots: [snaps()[0]] })).toBe('CHAIN_CORRUPT');
  });

  it('a snapshot entry that is not an object', () => {
    expect(withPatch({ snapshots: [null] })).toBe('CHAIN_CORRUPT');
  });

  it('a snapshot with an invalid id', () => {
    expect(withPatch({ snapshots: [{ ...snaps()[0], id: 5 }] })).toBe('CHAIN_CORRUPT');
  });

  it('a snapshot with an invalid name', () => {
    for (const name of ['', '   ', 'a\nb', 'tab\there', 'del\u007f', 'n'.repeat(256), 3]) {
      expect(withPatch({ snapshots: [{ ...snaps()[0], name }] }), JSON.stringify(name)).toBe('CHAIN_CORRUPT');
    }
  });

  it('a snapshot with an invalid description', () => {
    expect(withPatch({ snapshots: [{ ...snaps()[0], description: 'd'.repeat(4097) }] })).toBe('CHAIN_CORRUPT');
    expect(withPatch({ snapshots: [{ ...snaps()[0], description: null }] })).toBe('CHAIN_CORRUPT');
  });

  it('a snapshot with an invalid creation time', () => {
    expect(withPatch({ snapshots: [{ ...snaps()[0], created: 1 }] })).toBe('CHAIN_CORRUPT');
  });

  it('a snapshot naming a layer that is not listed', () => {
    expect(withPatch({ snapshots: [{ ...snaps()[0], layer: id(0x66) }] })).toBe('CHAIN_CORRUPT');
  });

  it('a snapshot naming the active layer', () => {
    expect(withPatch({ snapshots: [{ ...snaps()[0], layer: L3 }] })).toBe('CHAIN_CORRUPT');
  });

  it('two snapshots with one name', () => {
    const s = snaps();
    expect(withPatch({ snapshots: [s[0], { ...s[1], name: 'one' }] })).toBe('CHAIN_CORRUPT');
  });

  it('two snapshots with one id', () => {
    const s = snaps();
    expect(withPatch({ snapshots: [s[0], { ...s[1], id: id(0x51) }] })).toBe('CHAIN_CORRUPT');
  });

  it('two snapshots on one layer', () => {
    const s = snaps();
    expect(withPatch({ snapshots: [s[0], { ...s[1], layer: L1 }] })).toBe('CHAIN_CORRUPT');
  });

  it('names the file in its errors', () => {
    try {
      decodeDescriptor(withChecksum({ ...valid(), dedup: 1 }), '/vm/disk.chain');
      expect.unreachable();
    } catch (err) {
      expect(isDeltaDiskError(err) && err.path).toBe('/vm/disk.chain');
    }
  });
});

describe('snapshot names', () => {
  it('accepts 1 to 255 printable characters, including non-ASCII', () => {
    for (const name of ['a', 'before upgrade', 'n'.repeat(255), 'résumé-✓', ' leading space']) {
      expect(isValidSnapshotName(name), name).toBe(true);
    }
  });

  it('refuses empty, blank, control characters, too long and non-strings', () => {
    for (const name of ['', ' ', '\t', 'a\u0000', 'a\u001b[31m', 'n'.repeat(256), undefined, null, 1]) {
      expect(isValidSnapshotName(name), JSON.stringify(name)).toBe(false);
    }
  });
});
