/**
 * Damaged and hostile chain files (issue 4): real delta files, descriptors and
 * operation-state records written by the chain, then mutated, each variant opened
 * read-only and writable and read whole.
 *
 * A variant must end in a typed DeltaDiskError or read exactly what the model says.
 * One more ending is legitimate, and only for damage past the log end of a layer's
 * newest header (its unindexed tail): the log ends at the first record that fails
 * its checks, exactly as after a torn append, so the disk reads as it did after an
 * earlier flush ("older log prefix"). Those earlier states are computed from the
 * undamaged files by cutting each tail at each record boundary. And a re-checksummed
 * tail record that the format's own rules accept (it names another block, say) is
 * a forgery no checksum can tell apart: it may be read as written, consistently.
 *
 * Mutations whose checksums would hide them are re-checksummed (delta header slot
 * CRC, record header CRC, map segment payload CRC, descriptor and state checksums),
 * so the structural validation behind each checksum is what gets exercised.
 */
import { createHash } from 'node:crypto';
import path from 'node:path';
import { crc32 } from 'node:zlib';
import { decode, encode } from '@msgpack/msgpack';
import { Disk } from '../../lib/chain/disk.js';
import { decodeDeltaHeader, DELTA_MAGIC, type DeltaHeader } from '../../lib/format/delta-header.js';
import { decodeDescriptor, encodeDescriptor, type Descriptor } from '../../lib/format/descriptor.js';
import { HEADER_SLOT_SIZE, LOG_START } from '../../lib/format/limits.js';
import { decodeOpState, encodeOpState, type OpState } from '../../lib/format/op-state.js';
import { decodeRecordHeader, layerTag, RECORD_HEADER_SIZE, RecordKind } from '../../lib/format/record.js';
import { MemoryFileSystem } from '../../lib/io/memory-file-system.js';
import type { Observed } from './chain-model.js';
import { observe } from './chain-checker.js';
import { steps, type ChainSys } from './chain-steps.js';
import { chainWorkloads, DESCRIPTOR } from './chain-workloads.js';
import { recordWorkload } from './crash-explorer.js';
import { attempt, describeValue, flipBit, HOSTILE_NUMBERS, type AllocationWatch } from './hostile.js';
import { Rng } from './rng.js';
import { Violation } from './workload.js';

const DIR = '/hostile/vm';
const BS = 4096;
const SIZE = 16 * BS + 1000;

export type Files = Map<string, Uint8Array>;

export interface RecordInfo {
  readonly at: number;
  readonly kind: number;
  readonly seq: number;
  readonly block: number;
  readonly count: number;
  readonly payloadLength: number;
  readonly end: number;
}

export interface DeltaLayout {
  readonly file: string;
  readonly slots: readonly { readonly used: number; readonly header: DeltaHeader | undefined }[];
  readonly newest: 0 | 1;
  readonly header: DeltaHeader;
  readonly tag: number;
  readonly records: readonly RecordInfo[];
  readonly size: number;
}

export interface ChainFixture {
  readonly name: string;
  readonly files: ReadonlyMap<string, Uint8Array>;
  /** Digest of what the model says the disk reads (current state and every snapshot). */
  readonly expected: string;
  /** Digests of the states a cut of some layer's unindexed tail gives. */
  readonly prefixes: ReadonlySet<string>;
  readonly deltas: readonly DeltaLayout[];
  /** The active layer's file. */
  readonly active: string;
}

export interface Variant {
  readonly structure: string;
  readonly mutation: string;
  /** True when every changed byte lies in a layer's unindexed tail (past its header's log end). */
  readonly inTail: boolean;
  /**
   * True when the mutation, checksums recomputed, yields a structure the format
   * cannot tell from a genuine one (a tail record naming another block): the disk
   * may read it as written, as long as every open reads the same.
   */
  readonly forged?: boolean;
  /** A gap documented by a failing regression test: a wrong read is counted under this name, not as a violation. */
  readonly knownGap?: string;
  make(files: ReadonlyMap<string, Uint8Array>): Files;
}

/** The gap test/regressions/block-reads-skip-crc.test.ts documents. */
export const BLOCK_CRC_GAP = 'block data is served without checking its CRC';

export function digest(o: Observed): string {
  const h = createHash('sha256').update(o.current);
  for (const name of [...o.snapshots.keys()].sort()) h.update(`\0${name}\0`).update(o.snapshots.get(name)!);
  return h.digest('hex');
}

async function load(files: ReadonlyMap<string, Uint8Array>): Promise<MemoryFileSystem> {
  const mem = new MemoryFileSystem();
  await mem.mkdirp(DIR);
  for (const [name, bytes] of files) {
    const h = await mem.open(path.join(DIR, name), 'createExclusive');
    if (bytes.length > 0) await h.write([bytes], 0);
    await h.close();
  }
  return mem;
}

async function readState(files: ReadonlyMap<string, Uint8Array>, readOnly: boolean): Promise<Observed> {
  const mem = await load(files);
  const disk = await Disk.open(path.join(DIR, DESCRIPTOR), { fs: mem, lock: false, readOnly });
  try {
    return await observe(disk);
  } finally {
    await disk.close();
  }
}

function filesOf(mem: MemoryFileSystem, names: readonly string[]): Files {
  return new Map(names.map((n) => [n, mem.readFileSync(path.join(DIR, n))]));
}

/** Parses a delta file's header slots and records (as far as they are intact). */
export function parseDelta(file: string, bytes: Uint8Array): DeltaLayout {
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const slots = [0, 1].map((i) => {
    const slot = b.subarray(i * HEADER_SLOT_SIZE, (i + 1) * HEADER_SLOT_SIZE);
    let header: DeltaHeader | undefined;
    try {
      header = decodeDeltaHeader(slot);
    } catch {
      header = undefined;
    }
    return { used: slot.length >= 20 && slot.subarray(0, 8).equals(DELTA_MAGIC) ? 20 + slot.readUInt32LE(12) : 0, header };
  });
  const newest: 0 | 1 = slots[1]!.header !== undefined && (slots[0]!.header === undefined || slots[1]!.header.generation > slots[0]!.header.generation) ? 1 : 0;
  const header = slots[newest]!.header!;
  const tag = layerTag(header.layerId);
  const records: RecordInfo[] = [];
  let pos = LOG_START;
  for (;;) {
    const rh = decodeRecordHeader(b, pos, tag);
    if (rh === undefined) break;
    const end = pos + RECORD_HEADER_SIZE + rh.payloadLength;
    if (end > b.length) break;
    records.push({ at: pos, kind: rh.kind, seq: rh.seq, block: rh.block, count: rh.count, payloadLength: rh.payloadLength, end });
    pos = end;
  }
  return { file, slots, newest, header, tag, records, size: bytes.length };
}

/** States reachable by cutting one layer's unindexed tail at a record boundary. */
async function prefixStates(files: ReadonlyMap<string, Uint8Array>, deltas: readonly DeltaLayout[]): Promise<Set<string>> {
  const out = new Set<string>();
  for (const d of deltas) {
    const tail = d.records.filter((r) => r.at >= d.header.logEnd);
    if (tail.length === 0) continue;
    for (const cut of [d.header.logEnd, ...tail.map((r) => r.end)]) {
      const copy = new Map(files);
      copy.set(d.file, files.get(d.file)!.slice(0, cut));
      // A cut that leaves the disk unreadable (a reference whose content was in the
      // cut part) is no state to accept; damage there must end in an error.
      const state = await readState(copy, true).catch(() => undefined);
      if (state !== undefined) out.add(digest(state));
    }
  }
  return out;
}

async function finish(name: string, files: Files): Promise<ChainFixture> {
  const d = decodeDescriptor(Buffer.from(files.get(DESCRIPTOR)!).toString('utf8'));
  const deltas = d.layers.map((l) => parseDelta(l.file, files.get(l.file)!));
  const active = d.layers.find((l) => l.id === d.active)!.file;
  const expected = digest(await readState(files, true));
  const prefixes = await prefixStates(files, deltas);
  return { name, files, expected, prefixes, deltas, active };
}

function bytesOf(seed: number, blocks: number): Uint8Array {
  return new Rng(seed).bytes(blocks * BS);
}

/**
 * A disk with every record kind: DATA, ZERO, REF (to its own layer and to an
 * ancestor), BLOB (carried over by a stream merge), map segments in sealed layers,
 * and an active layer with an indexed part and a flushed, unindexed tail. Copied
 * while the disk is open, as a crash would find it.
 */
export async function richFixture(): Promise<ChainFixture> {
  const mem = new MemoryFileSystem();
  await mem.mkdirp(DIR);
  const p = path.join(DIR, DESCRIPTOR);
  const options = { fs: mem, lock: false };
  const sys: ChainSys = { disk: await Disk.create(p, { ...options, size: SIZE, blockSize: BS }), path: p, options };
  const Q = bytesOf(1, 1);
  const R = bytesOf(2, 1);
  const plan = [
    steps.write(0, bytesOf(3, 2)),
    steps.write(3 * BS, Q),
    steps.write(3 * BS, R),
    steps.snapshot('s1'),
    steps.write(6 * BS, bytesOf(4, 8)),
    steps.write(15 * BS, Q),
    steps.zero(0, BS),
    steps.snapshot('s2'),
    steps.deleteSnapshot('s1'), // stream merge: Q carried over as a BLOB
    steps.write(4 * BS, R),
    steps.write(5 * BS + 100, bytesOf(5, 1).subarray(0, 900)),
    steps.snapshot('s3'),
    steps.write(9 * BS, bytesOf(6, 2)),
    steps.reopen(), // indexes the active layer
    steps.write(11 * BS, bytesOf(7, 1)),
    steps.write(12 * BS, bytesOf(3, 1)),
    steps.zero(13 * BS, BS),
    steps.flush(), // acknowledged, but only in the tail
  ];
  for (const s of plan) await s.run(sys);
  const files = filesOf(mem, await mem.readdir(DIR));
  await sys.disk.close();
  return finish('disk with every record kind', files);
}

/**
 * A crash state in the middle of a stream merge, the state record present: in the
 * copy phase before anything was copied (`before copy`, where the record alone
 * drives what happens), or after the descriptor switch (`after switch`).
 */
export async function mergeFixture(phase: 'before copy' | 'after switch'): Promise<ChainFixture> {
  const w = chainWorkloads().find((x) => x.name === 'delete snapshot, stream merge')!;
  const rec = await recordWorkload(w, { dir: DIR });
  for (let point = rec.end; point > 0; point--) {
    const { fs } = rec.fs.crashState(point, { kind: 'keep-all' });
    const live = fs.liveFiles();
    const op = live.get(path.join(DIR, `${DESCRIPTOR}.op`));
    if (op === undefined) continue;
    const files: Files = new Map([...live].map(([p, b]) => [path.basename(p), b]));
    const state = decodeOpState(Buffer.from(op).toString('utf8'));
    const d = decodeDescriptor(Buffer.from(files.get(DESCRIPTOR)!).toString('utf8'));
    const switched = !d.layers.some((l) => l.id === state.removed.id);
    const survivor = parseDelta(state.survivor.file, files.get(state.survivor.file)!);
    const copied = survivor.records.some((r) => r.at >= survivor.header.logEnd);
    if (phase === 'after switch' ? switched && copied : !switched && !copied) return finish(`crash state of a merge, ${phase}`, files);
  }
  throw new Error(`no crash point of a merge ${phase}`);
}

/**
 * Opens the variant read-only and writable, reading everything each time.
 * @returns how each open ended; throws a Violation for any other ending.
 */
export async function runVariant(fx: ChainFixture, v: Variant, o: { timeoutMs?: number; watch?: AllocationWatch } = {}): Promise<string[]> {
  const timeoutMs = o.timeoutMs ?? 5000;
  const files = v.make(fx.files);
  const endings: string[] = [];
  const digests: string[] = [];
  // The writable open runs on what the read-only one left: it must change nothing.
  const mem = await load(files);
  for (const readOnly of [true, false]) {
    const mode = readOnly ? 'read-only' : 'writable';
    let seen: Observed | undefined;
    // Only the library's allocations are watched, not the harness's own.
    o.watch?.start();
    const e = await attempt(
      async () => {
        const disk = await Disk.open(path.join(DIR, DESCRIPTOR), { fs: mem, lock: false, readOnly });
        try {
          seen = await observe(disk);
        } finally {
          await disk.close();
        }
      },
      timeoutMs,
      `${mode} open`,
    ).finally(() => o.watch?.stop());
    if (e.kind === 'error') {
      endings.push(`typed error ${e.code}`);
      continue;
    }
    const dg = digest(seen!);
    digests.push(dg);
    if (dg === fx.expected) endings.push('identical to the model');
    else if (v.inTail && fx.prefixes.has(dg)) endings.push('older log prefix (damage in the unindexed tail)');
    else if (v.forged) endings.push('well-formed forgery, read as written');
    else if (v.knownGap !== undefined) endings.push(`known gap: ${v.knownGap}`);
    else throw new Violation(`${mode} open of ${v.structure} with ${v.mutation} read data that is neither the model's nor an error`);
  }
  if (v.forged && digests.length === 2 && digests[0] !== digests[1]) {
    throw new Violation(`${v.structure} with ${v.mutation}: the read-only and the writable open read different data`);
  }
  return endings;
}

// ------------------------------------------------------------------ crafting

const withFile = (name: string, fn: (b: Uint8Array) => Uint8Array) => (files: ReadonlyMap<string, Uint8Array>): Files => {
  const out = new Map(files);
  out.set(name, fn(files.get(name)!));
  return out;
};

/** A header slot with this payload (bytes or a value to msgpack), re-checksummed. */
function craftSlot(payload: Uint8Array, o: { version?: number; flags?: number; length?: number } = {}): Uint8Array {
  const slot = Buffer.alloc(HEADER_SLOT_SIZE);
  DELTA_MAGIC.copy(slot, 0);
  slot.writeUInt16LE(o.version ?? 1, 8);
  slot.writeUInt16LE(o.flags ?? 0, 10);
  slot.writeUInt32LE(o.length ?? payload.length, 12);
  slot.set(payload.subarray(0, HEADER_SLOT_SIZE - 20), 20);
  const claimed = slot.subarray(20, 20 + Math.min(o.length ?? payload.length, HEADER_SLOT_SIZE - 20));
  slot.writeUInt32LE(crc32(claimed, crc32(slot.subarray(0, 16))), 16);
  return slot;
}

function headerObject(h: DeltaHeader): Record<string, unknown> {
  return { ...h };
}

function pack(o: unknown): Uint8Array {
  return encode(o, { useBigInt64: true });
}

function putSlot(bytes: Uint8Array, slot: 0 | 1, content: Uint8Array): Uint8Array {
  const out = Uint8Array.from(bytes);
  out.set(content, slot * HEADER_SLOT_SIZE);
  return out;
}

function recordHeader(f: { kind: number; seq: bigint; block: bigint; count: number; payloadLength: number; payloadCrc: number; tag: number; flags?: number; reserved?: number }): Buffer {
  const b = Buffer.alloc(RECORD_HEADER_SIZE);
  b.write('DDRC', 0, 'latin1');
  b[4] = f.kind;
  b[5] = f.flags ?? 0;
  b.writeBigUInt64LE(f.seq, 8);
  b.writeBigUInt64LE(f.block, 16);
  b.writeUInt32LE(f.count >>> 0, 24);
  b.writeUInt32LE(f.payloadLength >>> 0, 28);
  b.writeUInt32LE(f.payloadCrc >>> 0, 32);
  b.writeUInt32LE(f.tag >>> 0, 36);
  b.writeUInt32LE(f.reserved ?? 0, 40);
  b.writeUInt32LE(crc32(b.subarray(0, 44)), 44);
  return b;
}

const u64 = (v: number | bigint): bigint => (typeof v === 'bigint' ? v & (2n ** 64n - 1n) : v < 0 || !Number.isInteger(v) ? 2n ** 64n - 1n : BigInt(v));
const u32 = (v: number | bigint): number => Number(BigInt.asUintN(32, typeof v === 'bigint' ? v : BigInt(Math.trunc(v))));

// ------------------------------------------------------------------ variants

export interface VariantOptions {
  /** Flip every bit of the used part of every header slot of every layer (long runs). */
  readonly allHeaderBits: boolean;
  readonly randomFlips: number;
  readonly rng: Rng;
}

/**
 * Bit flips in the header slots: every bit of the fixed part (magic, version, flags,
 * length, CRC) of every slot, and of the payload one bit per byte; every bit of
 * everything with `allHeaderBits`. CRC-32 detects every single-bit error, so each
 * payload flip takes the same path (the slot is discarded); the sampled payload
 * flips cover it, and the full run proves it bit by bit.
 */
export function* headerBitFlips(fx: ChainFixture, o: VariantOptions): Generator<Variant> {
  for (const d of fx.deltas) {
    for (const slot of [0, 1] as const) {
      const used = d.slots[slot]!.used;
      for (let byte = 0; byte < used; byte++) {
        const bits = o.allHeaderBits || byte < 20 ? [0, 1, 2, 3, 4, 5, 6, 7] : [byte % 8];
        for (const bit of bits) {
          const at = (slot * HEADER_SLOT_SIZE + byte) * 8 + bit;
          yield { structure: 'delta header slot', mutation: `${d.file} slot ${slot} bit ${byte}.${bit}`, inTail: false, make: withFile(d.file, (b) => flipBit(b, at)) };
        }
      }
    }
  }
}

/** Header fields set to hostile values, slot re-checksummed, in the slot that wins (and in the losing slot made to win). */
export function* headerFieldMutations(fx: ChainFixture): Generator<Variant> {
  const other = fx.deltas.find((d) => d.file !== fx.active)!;
  for (const d of fx.deltas) {
    const base = headerObject(d.header);
    const numeric = ['blockSize', 'virtualSize', 'generation', 'logEnd', 'nextSeq', 'lastSegment'];
    const values: [string, unknown][] = [];
    for (const f of numeric) {
      for (const v of HOSTILE_NUMBERS) values.push([f, v]);
      values.push([f, d.size], [f, d.size + 4096], [f, 4097], [f, null], [f, '8192']);
    }
    values.push(
      ['lastSegment', d.header.logEnd],
      ['logEnd', LOG_START],
      ['nextSeq', d.header.nextSeq + 1],
      ['diskId', other.header.layerId],
      ['layerId', other.header.layerId],
      ['parentId', d.header.layerId], // self-parent
      ['parentId', other.header.layerId],
      ['parentId', 'not-an-id'],
      ['parentFile', '../../etc/passwd'],
      ['parentFile', '/dev/zero'],
      ['parentFile', 'x'.repeat(300)],
      ['sealed', 'yes'],
      ['snapshot', { id: 'zz', name: 3 }],
      ['created', 'x'.repeat(100)],
    );
    const slots: [0 | 1, number][] = [[d.newest, d.header.generation]];
    if (d.slots[d.newest === 0 ? 1 : 0]!.header !== undefined) slots.push([d.newest === 0 ? 1 : 0, d.header.generation + 1]);
    for (const [slot, generation] of slots) {
      for (const [field, value] of values) {
        const o = { ...base, generation, [field]: value };
        yield {
          structure: 'delta header fields',
          mutation: `${d.file} slot ${slot} ${field} = ${describeValue(value)}`,
          inTail: false,
          make: withFile(d.file, (b) => putSlot(b, slot, craftSlot(pack(o)))),
        };
      }
    }
    const slot = d.newest;
    const payload = pack(base);
    const shapes: [string, Uint8Array][] = [
      ['version 2', craftSlot(payload, { version: 2 })],
      ['feature flags 1', craftSlot(payload, { flags: 1 })],
      ['feature flags 0x8000', craftSlot(payload, { flags: 0x8000 })],
      ['payload length 4077', craftSlot(payload, { length: 4077 })],
      ['payload length 2^32-1', craftSlot(payload, { length: 0xffffffff })],
      ['payload length 0', craftSlot(payload, { length: 0 })],
      ['payload an array', craftSlot(pack([1, 2, 3]))],
      ['payload nil', craftSlot(pack(null))],
      ['payload a string', craftSlot(pack('DDLT'))],
      ['payload with a 4000-character key', craftSlot(pack({ ...base, ['k'.repeat(4000)]: 1 }))],
      ['payload truncated msgpack', craftSlot(payload.subarray(0, payload.length - 5))],
      ['payload not msgpack', craftSlot(new Uint8Array(64).fill(0xc1))],
      ['other layer\'s header', craftSlot(pack(headerObject(other.header)))],
    ];
    for (const [what, content] of shapes) {
      yield { structure: 'delta header fields', mutation: `${d.file} slot ${slot} ${what}`, inTail: false, make: withFile(d.file, (b) => putSlot(b, slot, content)) };
    }
  }
}

/**
 * Would the layer accept this re-checksummed header in place of `r` as a genuine
 * record (the format's own rules: magic, CRC, tag, next sequence number, a shape
 * that fits the disk, a payload CRC that still holds)?
 */
function wellFormedRecord(header: Buffer, r: RecordInfo, d: DeltaLayout): boolean {
  const rh = decodeRecordHeader(header, 0, d.tag);
  if (rh === undefined || rh.seq !== r.seq || rh.payloadLength !== r.payloadLength) return false;
  const maxBlocks = Math.ceil(d.header.virtualSize / d.header.blockSize);
  const bs = d.header.blockSize;
  const sameCrcRule = rh.kind === r.kind || (rh.kind !== RecordKind.ZERO && rh.kind !== RecordKind.REF && r.kind !== RecordKind.ZERO && r.kind !== RecordKind.REF);
  switch (rh.kind) {
    case RecordKind.DATA:
      return sameCrcRule && rh.payloadLength === rh.count * bs && rh.block + rh.count <= maxBlocks;
    case RecordKind.BLOB:
      return sameCrcRule && rh.payloadLength === rh.count * bs && rh.block === 0;
    case RecordKind.ZERO:
      return sameCrcRule && rh.payloadLength === 0 && rh.block + rh.count <= maxBlocks;
    case RecordKind.REF:
      return sameCrcRule && rh.payloadLength === rh.count * 32 && rh.block + rh.count <= maxBlocks;
    default:
      return false;
  }
}

/** Record header fields set to hostile values, header re-checksummed. */
export function* recordMutations(fx: ChainFixture): Generator<Variant> {
  for (const d of fx.deltas) {
    // Every record of the tail (it is scanned on open); in the indexed part the first
    // record of each kind and every map segment.
    const seen = new Set<number>();
    const chosen = d.records.filter((r) => {
      if (r.at >= d.header.logEnd || r.kind === RecordKind.MAPSEG) return true;
      if (seen.has(r.kind)) return false;
      seen.add(r.kind);
      return true;
    });
    for (const r of chosen) {
      const inTail = r.at >= d.header.logEnd;
      const f = { kind: r.kind, seq: BigInt(r.seq), block: BigInt(r.block), count: r.count, payloadLength: r.payloadLength, payloadCrc: 0, tag: d.tag };
      const changes: [string, Partial<typeof f> & { flags?: number; reserved?: number }][] = [];
      for (const v of HOSTILE_NUMBERS) {
        changes.push([`seq = ${describeValue(v)}`, { seq: u64(v) }], [`block = ${describeValue(v)}`, { block: u64(v) }]);
        changes.push([`count = ${describeValue(v)}`, { count: u32(v) }], [`payload length = ${describeValue(v)}`, { payloadLength: u32(v) }]);
      }
      changes.push(
        ['seq - 1', { seq: BigInt(r.seq - 1) }],
        ['seq + 1', { seq: BigInt(r.seq + 1) }],
        ['block past the disk', { block: BigInt(Math.ceil(SIZE / BS)) }],
        ['count + 1', { count: r.count + 1 }],
        ['payload length + 1', { payloadLength: r.payloadLength + 1 }],
        ['payload length 8 MiB + 1', { payloadLength: 8 * 1024 * 1024 + 1 }],
        ['kind 0', { kind: 0 }],
        ['kind 6', { kind: 6 }],
        ['kind 255', { kind: 255 }],
        ...[1, 2, 3, 4, 5].filter((k) => k !== r.kind).map((k): [string, { kind: number }] => [`kind ${k}`, { kind: k }]),
        ['flags 1', { flags: 1 }],
        ['reserved 1', { reserved: 1 }],
        ['tag of another layer', { tag: (d.tag ^ 0x5a5a5a5a) >>> 0 }],
      );
      const crc = Buffer.from(fx.files.get(d.file)!).readUInt32LE(r.at + 32);
      for (const [what, change] of changes) {
        const header = recordHeader({ ...f, payloadCrc: crc, ...change });
        const make = withFile(d.file, (b) => {
          const out = Uint8Array.from(b);
          out.set(header, r.at);
          return out;
        });
        const forged = inTail && wellFormedRecord(header, r, d);
        yield { structure: 'record header', mutation: `${d.file} record @${r.at} (kind ${r.kind}) ${what}`, inTail, forged, make };
      }
    }
  }
}

/**
 * Fields of the newest map segment of each sealed layer set to hostile values; the
 * segment is re-encoded and re-checksummed, the file re-laid after it and the
 * header's log end moved to match, so only the segment's own validation stands.
 */
export function* segmentMutations(fx: ChainFixture): Generator<Variant> {
  for (const d of fx.deltas) {
    const seg = d.records.filter((r) => r.kind === RecordKind.MAPSEG && r.end === d.header.logEnd).at(-1);
    if (seg === undefined || d.records.at(-1) !== seg) continue; // only where the segment ends the file
    const bytes = fx.files.get(d.file)!;
    const payload = bytes.subarray(seg.at + RECORD_HEADER_SIZE, seg.end);
    const o = decode(payload) as Record<string, unknown>;
    const count = o.count as number;
    const col = (k: string): Uint8Array => o[k] as Uint8Array;
    const f64 = (values: number[]): Uint8Array => new Uint8Array(Float64Array.from(values).buffer);
    const offsets = new Float64Array(Uint8Array.from(col('offsets')).buffer);
    const changes: [string, Record<string, unknown>][] = [];
    for (const k of ['prev', 'first', 'end', 'firstSeq', 'count']) {
      for (const v of HOSTILE_NUMBERS) changes.push([`${k} = ${describeValue(v)}`, { [k]: v }]);
    }
    changes.push(
      ['prev = itself', { prev: seg.at }],
      ['prev past the end', { prev: d.size + 8192 }],
      ['first after end', { first: (o.end as number) + 1 }],
      ['end past the segment', { end: seg.at + 1 }],
      ['count + 1', { count: count + 1 }],
      ['count 65537', { count: 65537 }],
      ['full flipped', { full: !(o.full as boolean) }],
      ['v = 2', { v: 2 }],
      ['kinds all 0', { kinds: new Uint8Array(count) }],
      ['kinds all MAPSEG', { kinds: new Uint8Array(count).fill(5) }],
      ['blocks past the disk', { blocks: f64(Array(count).fill(Math.ceil(SIZE / BS))) }],
      ['blocks negative', { blocks: f64(Array(count).fill(-1)) }],
      ['blocks NaN', { blocks: f64(Array(count).fill(Number.NaN)) }],
      ['blocks 2^53+1', { blocks: f64(Array(count).fill(2 ** 53 + 2)) }],
      ['offsets past the end of the file', { offsets: f64(Array(count).fill(d.size + 4096)) }],
      ['offsets into the header area', { offsets: f64(Array(count).fill(100)) }],
      ['offsets all the same (overlapping data)', { offsets: f64(Array(count).fill(offsets[0] ?? LOG_START)) }],
      ['offsets reversed', { offsets: f64([...offsets].reverse()) }],
      ['offsets unaligned', { offsets: f64([...offsets].map((x) => x + 1)) }],
      ['column kinds one short', { kinds: col('kinds').subarray(0, count - 1) }],
      ['column hashes empty', { hashes: new Uint8Array(0) }],
      ['column crcs a string', { crcs: 'x' }],
      ['not a map', { __replace: [1, 2, 3] }],
    );
    for (const [what, change] of changes) {
      const make = withFile(d.file, (b) => {
        const next = '__replace' in change ? change.__replace : { ...o, ...change };
        const newPayload = pack(next);
        const hdr = recordHeader({ kind: RecordKind.MAPSEG, seq: BigInt(seg.seq), block: 0n, count: 1, payloadLength: newPayload.length, payloadCrc: crc32(newPayload), tag: d.tag });
        const out = new Uint8Array(seg.at + RECORD_HEADER_SIZE + newPayload.length);
        out.set(b.subarray(0, seg.at));
        out.set(hdr, seg.at);
        out.set(newPayload, seg.at + RECORD_HEADER_SIZE);
        const h = { ...headerObject(d.header), logEnd: out.length };
        return putSlot(out, d.newest, craftSlot(pack(h)));
      });
      // A segment that says it is full is one compaction may legitimately write; one
      // whose DATA entries point at another record's bytes is caught only by a block CRC.
      const forged = what === 'full flipped';
      const knownGap = what.startsWith('offsets all the same') ? BLOCK_CRC_GAP : undefined;
      yield { structure: 'map segment', mutation: `${d.file} segment @${seg.at} ${what}`, inTail: false, forged, ...(knownGap ? { knownGap } : {}), make };
    }
  }
}

/** Cuts at every structure boundary (and one byte either side) of every delta, descriptor and state record. */
export function* truncations(fx: ChainFixture): Generator<Variant> {
  for (const d of fx.deltas) {
    const cuts = new Set<number>([0, 1, 8, 19, 20, 21, HEADER_SLOT_SIZE - 1, HEADER_SLOT_SIZE, HEADER_SLOT_SIZE + 1, LOG_START - 1, LOG_START, LOG_START + 1]);
    for (const r of d.records) for (const c of [r.at, r.at + 1, r.at + RECORD_HEADER_SIZE - 1, r.at + RECORD_HEADER_SIZE, r.at + RECORD_HEADER_SIZE + 1, r.end - 1]) cuts.add(c);
    for (const cut of [...cuts].filter((c) => c < d.size).sort((a, b) => a - b)) {
      const inTail = cut >= d.header.logEnd;
      yield { structure: 'truncated delta', mutation: `${d.file} cut at ${cut}`, inTail, make: withFile(d.file, (b) => b.slice(0, cut)) };
    }
  }
  for (const name of [DESCRIPTOR, `${DESCRIPTOR}.op`]) {
    const b = fx.files.get(name);
    if (b === undefined) continue;
    const text = Buffer.from(b).toString('utf8');
    const cuts = new Set<number>([0, 1, b.length - 1, b.length - 2]);
    // Every line end and every structural character of the JSON.
    for (let i = 0; i < text.length; i++) if ('\n{}[],:'.includes(text[i]!)) cuts.add(Buffer.byteLength(text.slice(0, i)));
    for (const cut of [...cuts].sort((x, y) => x - y)) {
      yield { structure: name === DESCRIPTOR ? 'truncated descriptor' : 'truncated state record', mutation: `${name} cut at ${cut}`, inTail: false, make: withFile(name, (x) => x.slice(0, cut)) };
    }
  }
}

/** Random single-bit flips in metadata: record headers, map segments, REF payloads, the descriptor and the state record. */
export function* randomMetadataFlips(fx: ChainFixture, o: VariantOptions): Generator<Variant> {
  const regions: { file: string; from: number; to: number; inTail: (at: number) => boolean }[] = [];
  for (const d of fx.deltas) {
    const tail = (at: number): boolean => at >= d.header.logEnd;
    for (const r of d.records) {
      regions.push({ file: d.file, from: r.at, to: r.at + RECORD_HEADER_SIZE, inTail: tail });
      if (r.kind === RecordKind.MAPSEG || r.kind === RecordKind.REF) regions.push({ file: d.file, from: r.at + RECORD_HEADER_SIZE, to: r.end, inTail: tail });
      // Block data is metadata only where a crash may tear it: the unindexed tail.
      if ((r.kind === RecordKind.DATA || r.kind === RecordKind.BLOB) && tail(r.at)) regions.push({ file: d.file, from: r.at + RECORD_HEADER_SIZE, to: r.end, inTail: tail });
    }
  }
  for (const name of [DESCRIPTOR, `${DESCRIPTOR}.op`]) {
    const b = fx.files.get(name);
    if (b !== undefined) regions.push({ file: name, from: 0, to: b.length, inTail: () => false });
  }
  const weights = regions.map((r) => r.to - r.from);
  const total = weights.reduce((s, w) => s + w, 0);
  for (let i = 0; i < o.randomFlips; i++) {
    let pick = o.rng.int(0, total - 1);
    let k = 0;
    while (pick >= weights[k]!) pick -= weights[k++]!;
    const r = regions[k]!;
    const at = r.from + pick;
    const bit = o.rng.int(0, 7);
    yield { structure: 'random metadata flip', mutation: `${r.file} bit ${at}.${bit}`, inTail: r.inTail(at), make: withFile(r.file, (b) => flipBit(b, at * 8 + bit)) };
  }
}

/** Indexed block data flipped: reads do not verify block CRCs (see the regression test). */
export function* indexedDataFlips(fx: ChainFixture, n: number, rng: Rng): Generator<Variant> {
  const regions = fx.deltas.flatMap((d) =>
    d.records.filter((r) => r.kind === RecordKind.DATA && r.end <= d.header.logEnd).map((r) => ({ file: d.file, from: r.at + RECORD_HEADER_SIZE, to: r.end })),
  );
  for (let i = 0; i < n; i++) {
    const r = rng.pick(regions);
    const at = rng.int(r.from, r.to - 1);
    yield { structure: 'indexed block data', mutation: `${r.file} bit ${at}.0`, inTail: false, knownGap: BLOCK_CRC_GAP, make: withFile(r.file, (b) => flipBit(b, at * 8)) };
  }
}

// ------------------------------------------------------------------ descriptor and state record

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
  yield variant('removed is the survivor', { ...s0, removed: { ...s0.removed, id: s0.survivor.id, file: s0.survivor.file } });
  yield variant('removed and survivor swapped', { ...s0, removed: { ...s0.survivor, generation: s0.removed.generation }, survivor: { id: s0.removed.id, file: s0.removed.file } });
  yield variant('removed layer unknown', { ...s0, removed: { ...s0.removed, id: fakeId(6) } });
  yield variant('removed file of another layer', { ...s0, removed: { ...s0.removed, file: DESCRIPTOR } });
  yield variant('survivor file "../x.delta"', { ...s0, survivor: { ...s0.survivor, file: '../x.delta' } });
  yield variant('survivor file "/dev/zero"', { ...s0, survivor: { ...s0.survivor, file: '/dev/zero' } });
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
