/**
 * A damaged or inconsistent disk is refused at open with its documented code
 * (docs/ERRORS.md): missing delta, wrong parent, foreign or swapped delta, cycle,
 * unknown versions, truncated or garbled headers, bad descriptors and state records.
 * Every refusal is quick, changes no file, and releases the writer lock (a second
 * attempt gets the same answer, not LOCKED). Damage is made by hand, with valid
 * checksums where the test is about something else.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { crc32 } from 'node:zlib';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { decodeDeltaHeader, encodeDeltaHeader, type DeltaHeader } from '../../lib/format/delta-header.js';
import { decodeDescriptor, encodeDescriptor, type Descriptor } from '../../lib/format/descriptor.js';
import { HEADER_SLOT_SIZE } from '../../lib/format/limits.js';
import { encodeOpState } from '../../lib/format/op-state.js';
import { Disk } from '../../lib/index.js';
import { codeOf, dirState, pattern } from '../helpers/disk.js';
import { tempDir } from '../helpers/temp-dir.js';

const BS = 4096;
const SIZE = 32 * BS;

let dir: string;
let cleanup: () => void;
let file: string;

beforeEach(async () => {
  ({ dir, cleanup } = tempDir('deltadisk-damage-'));
  file = path.join(dir, 'disk.chain');
  // base ← 000001 (a) ← 000002 (b) ← 000003 (active)
  const d = await Disk.create(file, { size: SIZE, blockSize: BS });
  await d.write(0, pattern(BS, 1));
  await d.snapshot('a');
  await d.write(BS, pattern(BS, 2));
  await d.snapshot('b');
  await d.write(2 * BS, pattern(BS, 3));
  await d.close();
});
afterEach(() => cleanup());

const delta = (n: number) => path.join(dir, `disk-00000${n}.delta`);
const readDesc = (): Descriptor => decodeDescriptor(fs.readFileSync(file, 'utf8'));
const writeDesc = (d: Descriptor) => fs.writeFileSync(file, encodeDescriptor(d));

/** Rewrites both header slots of delta `n` with a valid CRC. */
function rewriteHeader(n: number, patch: Partial<DeltaHeader>): void {
  const bytes = fs.readFileSync(delta(n));
  const a = decodeDeltaHeader(bytes.subarray(0, HEADER_SLOT_SIZE));
  const b = decodeDeltaHeader(bytes.subarray(HEADER_SLOT_SIZE, 2 * HEADER_SLOT_SIZE));
  const newest = b !== undefined && (a === undefined || b.generation > a.generation) ? b : a!;
  const slot = encodeDeltaHeader({ ...newest, ...patch });
  slot.copy(bytes, 0);
  slot.copy(bytes, HEADER_SLOT_SIZE);
  fs.writeFileSync(delta(n), bytes);
}

/**
 * Opens the disk read-only and read-write, expecting `code` from both (or only the
 * writable open when `writableOnly`), within a time bound, with no file changed and
 * the lock released.
 */
async function refused(code: string, opts: { writableOnly?: boolean; allowReadOnly?: boolean } = {}): Promise<void> {
  const before = dirState(dir);
  const started = Date.now();
  expect(await codeOf(Disk.open(file)), 'writable open').toBe(code);
  expect(await codeOf(Disk.open(file)), 'second writable open (lock released?)').toBe(code);
  if (!opts.writableOnly) expect(await codeOf(Disk.open(file, { readOnly: true })), 'read-only open').toBe(code);
  expect(Date.now() - started).toBeLessThan(5000);
  expect(dirState(dir)).toEqual(before);
}

describe('missing files', () => {
  it('a missing descriptor is NOT_FOUND', async () => {
    fs.rmSync(file);
    await refused('NOT_FOUND');
  });

  it('a missing active delta is NOT_FOUND', async () => {
    fs.rmSync(delta(3));
    await refused('NOT_FOUND');
  });

  it('a missing delta in the middle of the chain is NOT_FOUND', async () => {
    fs.rmSync(delta(2));
    await refused('NOT_FOUND');
  });

  it('a missing delta off the current path is NOT_FOUND when that snapshot is read', async () => {
    const d = await Disk.open(file);
    await d.revert('a'); // b's layer (000002) is now off the current path
    await d.close();
    fs.rmSync(delta(2));
    const again = await Disk.open(file);
    try {
      expect((await again.read(0, BS)).equals(pattern(BS, 1))).toBe(true);
      expect(await codeOf(again.openSnapshot('b'))).toBe('NOT_FOUND');
      expect(await codeOf(again.info())).toBe('NOT_FOUND');
    } finally {
      await again.close();
    }
  });
});

describe('deltas that do not belong where the descriptor puts them', () => {
  it('a delta whose header names another parent is CHAIN_CORRUPT', async () => {
    rewriteHeader(3, { parentId: randomUUID() });
    await refused('CHAIN_CORRUPT');
  });

  it('a descriptor that names another parent than the delta does is CHAIN_CORRUPT', async () => {
    const d = readDesc();
    const [l1, , l3] = d.layers;
    writeDesc({ ...d, generation: d.generation + 1, layers: d.layers.map((l) => (l.id === l3!.id ? { ...l, parent: l1!.id } : l)) });
    await refused('CHAIN_CORRUPT');
  });

  it('two deltas swapped is CHAIN_CORRUPT', async () => {
    const two = fs.readFileSync(delta(2));
    fs.writeFileSync(delta(2), fs.readFileSync(delta(3)));
    fs.writeFileSync(delta(3), two);
    await refused('CHAIN_CORRUPT');
  });

  it('a delta of another disk put in place of one of ours is CHAIN_CORRUPT', async () => {
    const otherDir = path.join(dir, 'other');
    fs.mkdirSync(otherDir);
    const other = await Disk.create(path.join(otherDir, 'disk.chain'), { size: SIZE, blockSize: BS });
    await other.write(0, pattern(BS, 9));
    await other.close();
    fs.copyFileSync(path.join(otherDir, 'disk-000001.delta'), delta(3));
    fs.rmSync(otherDir, { recursive: true });
    await refused('CHAIN_CORRUPT');
  });

  it('a delta with another block size or virtual size is CHAIN_CORRUPT', async () => {
    rewriteHeader(1, { blockSize: 2 * BS });
    await refused('CHAIN_CORRUPT');
  });

  it('a descriptor whose layers form a cycle is CHAIN_CORRUPT', async () => {
    const d = readDesc();
    const [l1, l2] = d.layers;
    writeDesc({ ...d, layers: d.layers.map((l) => (l.id === l1!.id ? { ...l, parent: l2!.id } : l)) });
    await refused('CHAIN_CORRUPT');
  });

  it('a descriptor naming a delta outside the directory is UNSAFE_PATH', async () => {
    const d = readDesc();
    writeDesc({ ...d, layers: d.layers.map((l, i) => (i === 2 ? { ...l, file: '../disk-000003.delta' } : l)) });
    await refused('UNSAFE_PATH');
  });
});

describe('versions this build does not know', () => {
  it('a descriptor of version 3 is UNSUPPORTED_VERSION', async () => {
    const o = JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, unknown>;
    fs.writeFileSync(file, JSON.stringify({ ...o, version: 3 }));
    await refused('UNSUPPORTED_VERSION');
  });

  it('a delta header of format version 2 is UNSUPPORTED_VERSION', async () => {
    const bytes = fs.readFileSync(delta(3));
    for (const at of [0, HEADER_SLOT_SIZE]) {
      const slot = bytes.subarray(at, at + HEADER_SLOT_SIZE);
      slot.writeUInt16LE(2, 8);
      const len = slot.readUInt32LE(12);
      slot.writeUInt32LE(crc32(slot.subarray(20, 20 + len), crc32(slot.subarray(0, 16))), 16);
    }
    fs.writeFileSync(delta(3), bytes);
    await refused('UNSUPPORTED_VERSION');
  });
});

describe('truncated and garbled files', () => {
  it('a delta shorter than its header is TRUNCATED', async () => {
    fs.truncateSync(delta(2), 100);
    await refused('TRUNCATED');
  });

  it('a delta cut off inside the log its header vouches for is TRUNCATED', async () => {
    // Delta 1 was sealed: its header's logEnd covers records and a map segment.
    const h = decodeDeltaHeader(fs.readFileSync(delta(1)).subarray(HEADER_SLOT_SIZE, 2 * HEADER_SLOT_SIZE))!;
    expect(h.logEnd).toBeGreaterThan(2 * HEADER_SLOT_SIZE);
    fs.truncateSync(delta(1), h.logEnd - 10);
    await refused('TRUNCATED');
  });

  it('a delta whose header slots are both garbage is CHAIN_CORRUPT', async () => {
    const bytes = fs.readFileSync(delta(3));
    randomBytes(2 * HEADER_SLOT_SIZE).copy(bytes, 0);
    fs.writeFileSync(delta(3), bytes);
    await refused('CHAIN_CORRUPT');
  });

  it('a delta that is all zeros is CHAIN_CORRUPT', async () => {
    fs.writeFileSync(delta(2), Buffer.alloc(3 * HEADER_SLOT_SIZE));
    await refused('CHAIN_CORRUPT');
  });

  it('a descriptor that is not JSON, or empty, is CHAIN_CORRUPT', async () => {
    fs.writeFileSync(file, '{ "format": "deltadisk-chain", ');
    await refused('CHAIN_CORRUPT');
    fs.writeFileSync(file, '');
    await refused('CHAIN_CORRUPT');
  });

  it('a descriptor edited by hand (checksum not updated) is CHECKSUM_MISMATCH', async () => {
    fs.writeFileSync(file, fs.readFileSync(file, 'utf8').replace(`"virtualSize": ${SIZE}`, `"virtualSize": ${2 * SIZE}`));
    await refused('CHECKSUM_MISMATCH');
  });

  it('a descriptor over 8 MiB is LIMIT_EXCEEDED, without reading it whole', async () => {
    fs.writeFileSync(file, Buffer.alloc(8 * 1024 * 1024 + 1, 0x20));
    await refused('LIMIT_EXCEEDED');
  });

  it('a descriptor that is a directory or a symlink is UNSAFE_PATH', async () => {
    fs.renameSync(file, `${file}.real`);
    fs.symlinkSync(`${file}.real`, file);
    await refused('UNSAFE_PATH');
    fs.rmSync(file);
    fs.mkdirSync(file);
    await refused('UNSAFE_PATH');
  });
});

describe('state records of unfinished operations', () => {
  it('a garbled state record is STATE_MISMATCH', async () => {
    fs.writeFileSync(`${file}.op`, '{"format":"deltadisk-op"');
    await refused('STATE_MISMATCH');
  });

  it('a state record of another disk is STATE_MISMATCH', async () => {
    const d = readDesc();
    fs.writeFileSync(
      `${file}.op`,
      encodeOpState({
        op: 'merge',
        diskId: randomUUID(),
        direction: 'stream',
        removed: { id: d.layers[0]!.id, file: d.layers[0]!.file, generation: 2 },
        survivors: [{ id: d.layers[1]!.id, file: d.layers[1]!.file }],
        progress: 0,
        started: new Date().toISOString(),
      }),
    );
    await refused('STATE_MISMATCH');
  });

  it('a state record whose layers no longer match is STATE_MISMATCH on a writable open', async () => {
    const d = readDesc();
    fs.writeFileSync(
      `${file}.op`,
      encodeOpState({
        op: 'merge',
        diskId: d.diskId,
        direction: 'stream',
        // Layer 1 carries snapshot a: it was never mergeable.
        removed: { id: d.layers[0]!.id, file: d.layers[0]!.file, generation: 2 },
        survivors: [{ id: d.layers[1]!.id, file: d.layers[1]!.file }],
        progress: 0,
        started: new Date().toISOString(),
      }),
    );
    await refused('STATE_MISMATCH', { writableOnly: true });
  });

  it('a state record of a newer version is UNSUPPORTED_VERSION', async () => {
    fs.writeFileSync(`${file}.op`, JSON.stringify({ format: 'deltadisk-op', version: 2 }));
    await refused('UNSUPPORTED_VERSION');
  });
});

describe('a descriptor rebuilt after the active delta was lost too', () => {
  it('keeps the newest snapshot read-only and its name, and gives the disk a new, empty active layer', async () => {
    // Lost: the descriptor and the active delta (000003). Every leaf left is sealed.
    fs.rmSync(file);
    fs.rmSync(delta(3));
    const report = await Disk.check(file, { repair: true });
    expect(report.repaired.map((f) => f.message).join('\n')).toMatch(/a new, empty active layer disk-000003\.delta on disk-000002\.delta/);
    const d = await Disk.open(file);
    try {
      expect(d.snapshots().map((s) => s.name)).toEqual(['a', 'b']);
      // The disk reads as snapshot b; writing changes the disk, never b.
      const b = Buffer.concat([pattern(BS, 1), pattern(BS, 2)]);
      expect(Buffer.from(await d.read(0, 2 * BS)).equals(b)).toBe(true);
      await d.write(BS, pattern(BS, 9));
      const snap = await d.openSnapshot('b');
      try {
        expect(Buffer.from(await snap.read(0, 2 * BS)).equals(b)).toBe(true);
      } finally {
        await snap.close();
      }
    } finally {
      await d.close();
    }
    expect((await Disk.check(file)).result).toBe('clean');
  });

  it('a repair cut while creating that layer (an empty delta at its number) is repaired by the next run', async () => {
    fs.rmSync(file);
    fs.rmSync(delta(3));
    // What LayerFile.create leaves when cut before the header is durable.
    fs.writeFileSync(delta(3), Buffer.alloc(0));
    const report = await Disk.check(file, { repair: true });
    expect(report.repaired.map((f) => f.message).join('\n')).toMatch(/a new, empty active layer disk-000004\.delta on disk-000002\.delta/);
    const d = await Disk.open(file);
    try {
      expect(d.snapshots().map((s) => s.name)).toEqual(['a', 'b']);
      expect(Buffer.from(await d.read(0, 2 * BS)).equals(Buffer.concat([pattern(BS, 1), pattern(BS, 2)]))).toBe(true);
      await d.snapshot('c');
    } finally {
      await d.close();
    }
    // The cut file is not ours for certain: left alone, listed by check.
    expect(fs.statSync(delta(3)).size).toBe(0);
  });
});
