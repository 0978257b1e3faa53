/**
 * Hostile and damaged input, found in review: cases the mutation harness
 * (hostile-input.test.ts) does not reach because they need a real file system (a
 * FIFO), a change after the open (a counter at its bound carried into the next
 * header or descriptor), or a state record pointing the cleanup at a live file.
 * Each must end in a typed refusal that leaves the disk readable as before.
 */
import { execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { decodeDeltaHeader, encodeDeltaHeader } from '../../lib/format/delta-header.js';
import { decodeDescriptor, encodeDescriptor, type Descriptor } from '../../lib/format/descriptor.js';
import { HEADER_SLOT_SIZE, MAX_DESCRIPTOR_BYTES } from '../../lib/format/limits.js';
import { encodeOpState } from '../../lib/format/op-state.js';
import { encodeRecordHeader, layerTag, RECORD_HEADER_SIZE, RecordKind } from '../../lib/format/record.js';
import { Disk } from '../../lib/index.js';
import { codeOf, dirState, pattern } from '../helpers/disk.js';
import { tempDir } from '../helpers/temp-dir.js';

const BS = 4096;
const SIZE = 32 * BS;

let dir: string;
let cleanup: () => void;
let file: string;

beforeEach(async () => {
  ({ dir, cleanup } = tempDir('deltadisk-review-'));
  file = path.join(dir, 'disk.chain');
  // base ← 000001 (a) ← 000002 (active)
  const d = await Disk.create(file, { size: SIZE, blockSize: BS });
  await d.write(0, pattern(BS, 1));
  await d.snapshot('a');
  await d.write(BS, pattern(BS, 2));
  await d.close();
});
afterEach(() => cleanup());

const readDesc = (): Descriptor => decodeDescriptor(fs.readFileSync(file, 'utf8'));
const writeDesc = (d: Descriptor): void => fs.writeFileSync(file, encodeDescriptor(d));

/** Settles `p`, or fails the test after `ms` instead of hanging it. */
async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not finish within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([p, late]);
  } finally {
    clearTimeout(timer);
  }
}

/** The disk reads block 0 and 1 as written, and snapshot a as taken. */
async function readsAsWritten(): Promise<void> {
  const d = await Disk.open(file, { readOnly: true });
  try {
    expect((await d.read(0, 2 * BS)).equals(Buffer.concat([pattern(BS, 1), pattern(BS, 2)]))).toBe(true);
    const a = await d.openSnapshot('a');
    expect((await a.read(0, 2 * BS)).equals(Buffer.concat([pattern(BS, 1), Buffer.alloc(BS)]))).toBe(true);
    await a.close();
  } finally {
    await d.close();
  }
}

describe('files in the disk directory that are not regular files', () => {
  it('a FIFO named like a delta hangs neither a writable open nor check --repair, and is left alone', async () => {
    const fifo = path.join(dir, 'disk-000009.delta');
    execFileSync('mkfifo', [fifo]);
    try {
      const d = await within(Disk.open(file), 3000, 'writable open');
      await d.close();
      // A lost descriptor is rebuilt from the deltas: the FIFO is not one.
      fs.renameSync(file, `${file}.lost`);
      const report = await within(Disk.check(file, { repair: true }), 3000, 'check --repair');
      expect(report.findings.filter((f) => f.severity === 'corrupt')).toEqual([]);
      expect(fs.lstatSync(fifo).isFIFO()).toBe(true);
    } finally {
      // Unblocks an open stuck on the FIFO (old code), so the worker can exit.
      try {
        fs.closeSync(fs.openSync(fifo, fs.constants.O_WRONLY | fs.constants.O_NONBLOCK));
      } catch {
        // no reader: nothing is stuck
      }
    }
    await readsAsWritten();
  });
});

describe('counters at their bounds are refused before they are written past them', () => {
  it('a delta header generation of 2^53 - 1: the change is refused and the layer still reads', async () => {
    // Both slots of the active delta with the highest generation a header may hold.
    const p = path.join(dir, 'disk-000002.delta');
    const bytes = fs.readFileSync(p);
    const slots = [0, 1].map((i) => decodeDeltaHeader(bytes.subarray(i * HEADER_SLOT_SIZE, (i + 1) * HEADER_SLOT_SIZE)));
    const newest = slots.filter((h) => h !== undefined).sort((x, y) => y.generation - x.generation)[0]!;
    const slot = encodeDeltaHeader({ ...newest, generation: Number.MAX_SAFE_INTEGER });
    slot.copy(bytes, 0);
    slot.copy(bytes, HEADER_SLOT_SIZE);
    fs.writeFileSync(p, bytes);
    await readsAsWritten();
    const d = await Disk.open(file);
    // Sealing writes the header: generation 2^53 would read back as damage.
    expect(await codeOf(d.snapshot('b'))).toBe('CHAIN_CORRUPT');
    await d.close().catch(() => undefined);
    await readsAsWritten();
  });

  it.each([
    ['a descriptor generation of 2^53 - 1: the change is refused and the descriptor still opens', { generation: Number.MAX_SAFE_INTEGER }],
    ['nextLayer at the last twelve-digit number: no delta is created that no sweep could find', { nextLayer: 10 ** 12 }],
  ])('%s', async (_what, counters) => {
    writeDesc({ ...readDesc(), ...counters });
    const before = dirState(dir);
    const d = await Disk.open(file);
    expect(await codeOf(d.snapshot('b'))).toBe('CHAIN_CORRUPT');
    await d.close().catch(() => undefined);
    expect(dirState(dir)).toEqual(before);
    await readsAsWritten();
  });

  it('a snapshot whose description would take the descriptor past 8 MiB is LIMIT_EXCEEDED, with nothing changed', async () => {
    // Snapshots on layers of their own (their files are never opened: they are off
    // the current path), each with a description of 4096 characters that JSON
    // writes as six bytes each: 8 MiB is near.
    const d0 = readDesc();
    const description = '\u0001'.repeat(4096);
    const layers = [...d0.layers];
    const snapshots = [...d0.snapshots];
    const add = (text: string): void => {
      const id = randomUUID();
      const i = layers.length;
      layers.push({ id, file: `disk-${String(100 + i).padStart(6, '0')}.delta`, parent: null, created: new Date().toISOString() });
      snapshots.push({ id: randomUUID(), name: `old-${String(i).padStart(4, '0')}`, description: text, created: new Date().toISOString(), layer: id });
    };
    const size = (): number => encodeDescriptor({ ...d0, layers, snapshots }).length;
    add(description);
    const one = size();
    add(description);
    const each = size() - one;
    while (one + (snapshots.length - d0.snapshots.length) * each < MAX_DESCRIPTOR_BYTES - each) add(description);
    // Between one and two entries left: a shorter one leaves half an entry, room
    // for a snapshot without a description, not for one with.
    const gap = MAX_DESCRIPTOR_BYTES - size();
    add('\u0001'.repeat(Math.floor((gap - each / 2 - (each - 6 * 4096)) / 6)));
    expect(MAX_DESCRIPTOR_BYTES - size()).toBeGreaterThan(2000);
    expect(MAX_DESCRIPTOR_BYTES - size()).toBeLessThan(each - 2000);
    writeDesc({ ...d0, layers, snapshots, nextLayer: 100 + layers.length });
    const before = dirState(dir);
    const d = await Disk.open(file);
    expect(await codeOf(d.snapshot('b', description))).toBe('LIMIT_EXCEEDED');
    // The disk stays usable: a refused snapshot changed nothing, on disk or in memory.
    expect(await codeOf(d.snapshot('b'))).toBe('ok');
    await d.close();
    expect(Object.keys(dirState(dir)).length).toBe(Object.keys(before).length + 1);
    const again = await Disk.open(file, { readOnly: true });
    expect(again.snapshots().map((s) => s.name)).toContain('b');
    await again.close();
  });
});

describe('an unfinished merge whose state record names a file the merge does not remove', () => {
  /** A record of a stream merge after its switch: the descriptor already lacks `removed`. */
  function record(removed: { id: string; file: string }): void {
    const d = readDesc();
    const active = d.layers.find((l) => l.id === d.active)!;
    const state = encodeOpState({
      op: 'merge',
      diskId: d.diskId,
      direction: 'stream',
      removed: { ...removed, generation: 3 },
      survivors: [{ id: active.id, file: active.file }],
      progress: 0,
      started: new Date().toISOString(),
    });
    fs.writeFileSync(`${file}.op`, state);
  }

  it('a live layer is not deleted: STATE_MISMATCH, every file kept', async () => {
    const d = readDesc();
    const live = d.layers.find((l) => l.id !== d.active)!;
    record({ id: randomUUID(), file: live.file });
    const before = dirState(dir);
    expect(await codeOf(Disk.open(file))).toBe('STATE_MISMATCH');
    expect(await codeOf(Disk.check(file, { repair: true }))).toBe('STATE_MISMATCH');
    expect(dirState(dir)).toEqual(before);
    await readsAsWritten();
  });

  it('the descriptor is not deleted: it holds no delta header, so it is not the removed layer', async () => {
    record({ id: randomUUID(), file: 'disk.chain' });
    const before = dirState(dir);
    expect(await codeOf(async () => (await Disk.open(file)).close())).toBe('ok');
    // The record is gone, every other file is as it was.
    const { ['disk.chain.op']: _record, ...rest } = before;
    expect(dirState(dir)).toEqual(rest);
    await readsAsWritten();
  });

  it('a delta of another disk under the removed name is not deleted', async () => {
    // The file is named like ours and no descriptor names it, but its header is
    // another disk's (the leftover sweep leaves such a file alone too).
    fs.mkdirSync(path.join(dir, 'other'));
    const other = await Disk.create(path.join(dir, 'other', 'disk.chain'), { size: SIZE, blockSize: BS });
    await other.close();
    fs.copyFileSync(path.join(dir, 'other', 'disk-000001.delta'), path.join(dir, 'disk-000007.delta'));
    record({ id: randomUUID(), file: 'disk-000007.delta' });
    const before = dirState(dir);
    expect(await codeOf(Disk.open(file))).toBe('STATE_MISMATCH');
    expect(dirState(dir)).toEqual(before);
  });
});

describe('a descriptor naming a file that is not its layer', () => {
  it('consolidation drops the entry but deletes no file that is not that layer', async () => {
    // A sealed leaf without snapshot is dropped by consolidation: here its entry
    // names the descriptor itself, another disk's delta, and a file of the VM.
    fs.writeFileSync(path.join(dir, 'vm.vmx'), 'config');
    fs.mkdirSync(path.join(dir, 'other'));
    const other = await Disk.create(path.join(dir, 'other', 'other.chain'), { size: SIZE, blockSize: BS });
    await other.close();
    fs.renameSync(path.join(dir, 'other', 'other-000001.delta'), path.join(dir, 'other-000001.delta'));
    const d0 = readDesc();
    const a = d0.snapshots[0]!.layer;
    const strays = ['disk.chain', 'other-000001.delta', 'vm.vmx'].map((f) => ({ id: randomUUID(), file: f, parent: a, created: new Date().toISOString() }));
    writeDesc({ ...d0, layers: [...d0.layers, ...strays] });
    const keep = ['vm.vmx', 'other-000001.delta'].map((f) => [f, fs.readFileSync(path.join(dir, f))] as const);
    const d = await Disk.open(file);
    const result = await d.consolidate();
    expect(result.droppedLayers).toBe(3);
    await d.close();
    for (const [f, bytes] of keep) expect(fs.readFileSync(path.join(dir, f)).equals(bytes), f).toBe(true);
    expect(readDesc().layers.map((l) => l.file)).toEqual(d0.layers.map((l) => l.file));
    await readsAsWritten();
  });
});

describe('a record in the unindexed tail listing more blocks than the writer ever leaves unindexed', () => {
  it('a ZERO record of 2^22 blocks ends the log instead of costing millions of rows', async () => {
    // A large disk (so the run fits in it) whose only delta ends in a forged ZERO
    // record, checksums intact, over the blocks written.
    const big = path.join(dir, 'big.chain');
    const d = await Disk.create(big, { size: 2 ** 40, blockSize: BS });
    await d.write(0, pattern(2 * BS, 7));
    await d.close();
    const p = path.join(dir, 'big-000001.delta');
    const bytes = fs.readFileSync(p);
    const newest = [0, 1]
      .map((i) => decodeDeltaHeader(bytes.subarray(i * HEADER_SLOT_SIZE, (i + 1) * HEADER_SLOT_SIZE)))
      .filter((h) => h !== undefined)
      .sort((x, y) => y.generation - x.generation)[0]!;
    // The close left a segment and a PAD after it (one more sequence number).
    expect(bytes.length).toBeGreaterThan(newest.logEnd);
    const rec = Buffer.alloc(RECORD_HEADER_SIZE);
    encodeRecordHeader(rec, 0, RecordKind.ZERO, newest.nextSeq + 1, 0, 2 ** 22, 0, 0, layerTag(newest.layerId));
    fs.appendFileSync(p, rec);
    const rss = process.memoryUsage().rss;
    const started = Date.now();
    for (const readOnly of [true, false]) {
      const again = await Disk.open(big, { readOnly });
      expect((await again.read(0, 2 * BS)).equals(pattern(2 * BS, 7)), readOnly ? 'read-only' : 'writable').toBe(true);
      await again.close();
    }
    expect(Date.now() - started).toBeLessThan(2000);
    expect(process.memoryUsage().rss - rss).toBeLessThan(128 * 2 ** 20);
    // The writable open cut the record away.
    expect(fs.statSync(p).size).toBe(bytes.length);
  });
});
