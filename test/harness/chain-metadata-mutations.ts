/**
 * Mutations of the descriptor and the operation-state record for the hostile-input
 * tests (chain-hostile.ts runs them): fields set to hostile values with the
 * checksum recomputed, self-parent, cycles, depth past the limit, parent id
 * mismatches, paths escaping the directory or naming a device, and malformed text.
 */
import { decodeDescriptor, encodeDescriptor, type Descriptor } from '../../lib/format/descriptor.js';
import { decodeOpState, encodeOpState, type OpState } from '../../lib/format/op-state.js';
import type { ChainFixture, Variant } from './chain-hostile.js';
import { DESCRIPTOR } from './chain-workloads.js';
import { describeValue, HOSTILE_NUMBERS } from './hostile.js';
function descriptorText(d: Descriptor, exact?: [number, string]): Uint8Array {
  let text = encodeDescriptor(d).toString('utf8');
  // A literal the JSON parser rounds (2^53+1, 2^64-1) is written out exactly; the
  // checksum covers the parsed value, so it still holds.
  if (exact !== undefined) text = text.replace(JSON.stringify(exact[0]), exact[1]);
  return Buffer.from(text);
}

function asNumber(v: number | bigint): [number, [number, string] | undefined] {
  return typeof v === 'bigint' ? [Number(v), [Number(v), v.toString()]] : [v, undefined];
}

function fakeId(i: number): string {
  return `00000000-0000-4000-8000-${i.toString(16).padStart(12, '0')}`;
}

/** Descriptor fields set to hostile values and hostile shapes, checksum recomputed. */
export function* descriptorMutations(fx: ChainFixture): Generator<Variant> {
  const d0 = decodeDescriptor(Buffer.from(fx.files.get(DESCRIPTOR)!).toString('utf8'));
  const variant = (mutation: string, d: unknown, exact?: [number, string]): Variant => ({
    structure: 'descriptor',
    mutation,
    inTail: false,
    make: (files) => new Map(files).set(DESCRIPTOR, descriptorText(d as Descriptor, exact)),
  });
  for (const field of ['generation', 'virtualSize', 'blockSize', 'nextLayer'] as const) {
    for (const v of HOSTILE_NUMBERS) {
      const [n, exact] = asNumber(v);
      yield variant(`${field} = ${describeValue(v)}`, { ...d0, [field]: n }, exact);
    }
    yield variant(`${field} a string`, { ...d0, [field]: '1' });
  }
  yield variant('virtualSize one block larger', { ...d0, virtualSize: d0.virtualSize + d0.blockSize });
  yield variant('blockSize 8192', { ...d0, blockSize: 8192 });
  yield variant('nextLayer 1', { ...d0, nextLayer: 1 });
  yield variant('diskId of another disk', { ...d0, diskId: fakeId(1) });
  yield variant('diskId not an id', { ...d0, diskId: '../../x' });
  yield variant('dedup a string', { ...d0, dedup: 'yes' });
  const L = d0.layers;
  const leaf = L.find((l) => l.id === d0.active)!;
  const sealed = L.filter((l) => l.id !== d0.active);
  yield variant('active unknown', { ...d0, active: fakeId(2) });
  yield variant('active a layer with children', { ...d0, active: L[0]!.id });
  yield variant('no layers', { ...d0, layers: [] });
  yield {
    structure: 'descriptor',
    mutation: 'layers not a list',
    inTail: false,
    make: (files) => new Map(files).set(DESCRIPTOR, Buffer.from(descriptorText(d0).toString().replace(/"layers": \[[\s\S]*?\n  \],/, '"layers": {},'))),
  };
  yield variant('a layer its own parent', { ...d0, layers: L.map((l) => (l.id === leaf.id ? { ...l, parent: l.id } : l)) });
  yield variant('two layers parents of each other', { ...d0, layers: L.map((l, i) => (i === 0 ? { ...l, parent: L[1]!.id } : l)) });
  yield variant('a parent not listed', { ...d0, layers: L.map((l) => (l.id === leaf.id ? { ...l, parent: fakeId(3) } : l)) });
  yield variant('a layer listed twice', { ...d0, layers: [...L, L[0]] });
  yield variant('two layers sharing a file', { ...d0, layers: L.map((l) => (l.id === leaf.id ? { ...l, file: L[0]!.file } : l)) });
  if (sealed.length >= 2) {
    // The active layer re-parented onto the grandparent: its header names another parent.
    yield variant('parent id mismatch with the delta header', { ...d0, layers: L.map((l) => (l.id === leaf.id ? { ...l, parent: sealed[0]!.id } : l)) });
    yield variant('layer files swapped', { ...d0, layers: L.map((l) => (l.id === sealed[0]!.id ? { ...l, file: sealed[1]!.file } : l.id === sealed[1]!.id ? { ...l, file: sealed[0]!.file } : l)) });
  }
  for (const file of ['missing.delta', DESCRIPTOR, `${DESCRIPTOR}.op`, '../vm/disk-000002.delta', '/dev/zero', '.', 'a\\b', `x${'y'.repeat(300)}`]) {
    yield variant(`layer file ${JSON.stringify(file)}`, { ...d0, layers: L.map((l) => (l.id === leaf.id ? { ...l, file } : l)) });
  }
  // Depth past the limit, and more layers than allowed (files that do not exist).
  const chain = (n: number, branch: boolean) =>
    Array.from({ length: n }, (_, i) => ({ id: fakeId(100 + i), file: `f${i}.delta`, parent: i === 0 ? null : branch ? fakeId(100) : fakeId(99 + i), created: 'x' }));
  const deep = chain(513, false);
  yield variant('a chain 513 layers deep', { ...d0, layers: deep, active: deep.at(-1)!.id, snapshots: [] });
  const wide = chain(4097, true);
  yield variant('4097 layers', { ...d0, layers: wide, active: wide.at(-1)!.id, snapshots: [] });
  const S = d0.snapshots;
  if (S.length > 0) {
    yield variant('snapshot on the active layer', { ...d0, snapshots: S.map((s, i) => (i === 0 ? { ...s, layer: d0.active } : s)) });
    yield variant('snapshot on an unknown layer', { ...d0, snapshots: S.map((s, i) => (i === 0 ? { ...s, layer: fakeId(4) } : s)) });
    yield variant('snapshot name empty', { ...d0, snapshots: S.map((s, i) => (i === 0 ? { ...s, name: '' } : s)) });
    yield variant('snapshot name with control characters', { ...d0, snapshots: S.map((s, i) => (i === 0 ? { ...s, name: 'a\nb' } : s)) });
    yield variant('snapshot description of 5000 characters', { ...d0, snapshots: S.map((s, i) => (i === 0 ? { ...s, description: 'd'.repeat(5000) } : s)) });
    yield variant('snapshot listed twice', { ...d0, snapshots: [...S, S[0]] });
    yield variant('two snapshots with one name', { ...d0, snapshots: [...S, { ...S[0]!, id: fakeId(5), layer: L.find((l) => !S.some((s) => s.layer === l.id) && l.id !== d0.active)?.id ?? S[0]!.layer }] });
    yield variant('4097 snapshots', { ...d0, snapshots: Array.from({ length: 4097 }, (_, i) => ({ ...S[0]!, id: fakeId(10_000 + i), name: `n${i}` })) });
  }
  for (const file of ['disk-000002.delta', '../../../etc/passwd', '/dev/zero', 'json:{"file":"/etc/passwd"}']) {
    yield variant(`base ${JSON.stringify(file)}`, { ...d0, base: { file, size: d0.virtualSize, fingerprint: '0'.repeat(64) } });
  }
  yield variant('base with an invalid fingerprint', { ...d0, base: { file: 'x.raw', size: d0.virtualSize, fingerprint: 'zz' } });
  const text = (mutation: string, t: string): Variant => ({ structure: 'descriptor', mutation, inTail: false, make: (files) => new Map(files).set(DESCRIPTOR, Buffer.from(t)) });
  yield text('not JSON', '{"format": "deltadisk-chain", ');
  yield text('JSON nested 100000 deep', `${'['.repeat(100_000)}${']'.repeat(100_000)}`);
  yield text('a JSON string', '"deltadisk-chain"');
  yield text('version 2', Buffer.from(fx.files.get(DESCRIPTOR)!).toString('utf8').replace('"version": 1', '"version": 2'));
  yield text('format of another tool', Buffer.from(fx.files.get(DESCRIPTOR)!).toString('utf8').replace('"deltadisk-chain"', '"qcow2"'));
  yield text('checksum removed', Buffer.from(fx.files.get(DESCRIPTOR)!).toString('utf8').replace(/,\s*"checksum": "[0-9a-f]+"/, ''));
  yield { structure: 'descriptor', mutation: 'larger than 8 MiB', inTail: false, make: (files) => new Map(files).set(DESCRIPTOR, Buffer.concat([Buffer.from(files.get(DESCRIPTOR)!), Buffer.alloc(8 * 1024 * 1024, 0x20)])) };
}

/** State record fields set to hostile values, checksum recomputed. */
export function* opStateMutations(fx: ChainFixture): Generator<Variant> {
  const raw = fx.files.get(`${DESCRIPTOR}.op`);
  if (raw === undefined) return;
  const s0 = decodeOpState(Buffer.from(raw).toString('utf8'));
  const d0 = decodeDescriptor(Buffer.from(fx.files.get(DESCRIPTOR)!).toString('utf8'));
  const variant = (mutation: string, s: unknown, exact?: [number, string]): Variant => ({
    structure: 'operation state record',
    mutation,
    inTail: false,
    make: (files) => {
      let t = encodeOpState(s as OpState).toString('utf8');
      if (exact !== undefined) t = t.replace(JSON.stringify(exact[0]), exact[1]);
      return new Map(files).set(`${DESCRIPTOR}.op`, Buffer.from(t));
    },
  });
  for (const v of HOSTILE_NUMBERS) {
    const [n, exact] = asNumber(v);
    yield variant(`progress = ${describeValue(v)}`, { ...s0, progress: n }, exact);
    yield variant(`removed generation = ${describeValue(v)}`, { ...s0, removed: { ...s0.removed, generation: n } }, exact);
  }
  yield variant('progress past the last block', { ...s0, progress: Math.ceil(d0.virtualSize / d0.blockSize) + 1 });
  yield variant('direction reversed', { ...s0, direction: s0.direction === 'stream' ? 'commit' : 'stream' });
  yield variant('direction unknown', { ...s0, direction: 'sideways' });
  yield variant('removed generation + 1', { ...s0, removed: { ...s0.removed, generation: s0.removed.generation + 1 } });
  const sv = s0.survivors[0]!;
  yield variant('removed is the survivor', { ...s0, removed: { ...s0.removed, id: sv.id, file: sv.file } });
  yield variant('removed and survivor swapped', { ...s0, removed: { ...sv, generation: s0.removed.generation }, survivors: [{ id: s0.removed.id, file: s0.removed.file }] });
  yield variant('removed layer unknown', { ...s0, removed: { ...s0.removed, id: fakeId(6) } });
  yield variant('removed file of another layer', { ...s0, removed: { ...s0.removed, file: DESCRIPTOR } });
  yield variant('survivor file "../x.delta"', { ...s0, survivors: [{ ...sv, file: '../x.delta' }] });
  yield variant('survivor file "/dev/zero"', { ...s0, survivors: [{ ...sv, file: '/dev/zero' }] });
  yield variant('no survivors', { ...s0, survivors: [] });
  yield variant('commit with two survivors', { ...s0, direction: 'commit', survivors: [sv, sv] });
  yield variant('diskId of another disk', { ...s0, diskId: fakeId(7) });
  yield variant('operation unknown', { ...s0, op: 'prune' });
  yield variant('start time of 100 characters', { ...s0, started: 'x'.repeat(100) });
  const text = (mutation: string, t: string): Variant => ({ structure: 'operation state record', mutation, inTail: false, make: (files) => new Map(files).set(`${DESCRIPTOR}.op`, Buffer.from(t)) });
  const good = Buffer.from(raw).toString('utf8');
  yield text('version 2', good.replace('"version": 1', '"version": 2'));
  yield text('not JSON', '{"op":');
  yield text('empty', '');
  yield text('checksum damaged', good.replace(/"checksum": "([0-9a-f])/, (_m, c: string) => `"checksum": "${c === '0' ? '1' : '0'}`));
  yield { structure: 'operation state record', mutation: 'larger than 64 KiB', inTail: false, make: (files) => new Map(files).set(`${DESCRIPTOR}.op`, Buffer.alloc(64 * 1024 + 1, 0x20)) };
}
