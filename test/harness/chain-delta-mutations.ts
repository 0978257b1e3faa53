/**
 * Mutations of delta files for the hostile-input tests (chain-hostile.ts runs them):
 * header slot bit flips, header, record and map-segment fields set to hostile
 * values, cuts at every structure boundary, random flips in metadata, and flips in
 * indexed block data (a documented gap). Mutations a checksum would hide are
 * re-checksummed (slot CRC, record header CRC, segment payload CRC), so what gets
 * exercised is the structural validation behind each checksum.
 */
import { crc32 } from 'node:zlib';
import { decode, encode } from '@msgpack/msgpack';
import { DELTA_MAGIC, type DeltaHeader } from '../../lib/format/delta-header.js';
import { HEADER_SLOT_SIZE, LOG_START } from '../../lib/format/limits.js';
import { decodeRecordHeader, RECORD_HEADER_SIZE, RecordKind } from '../../lib/format/record.js';
import { BLOCK_CRC_GAP, SIZE, withFile, type ChainFixture, type DeltaLayout, type RecordInfo, type Variant } from './chain-hostile.js';
import { DESCRIPTOR } from './chain-workloads.js';
import { describeValue, flipBit, HOSTILE_NUMBERS } from './hostile.js';
import type { Rng } from './rng.js';

const BS = 4096;
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
  // DATA and BLOB check a CRC of block CRCs, the other kinds a CRC of the payload.
  const runCrc = (k: number): boolean => k === RecordKind.DATA || k === RecordKind.BLOB;
  const sameCrcRule = runCrc(rh.kind) === runCrc(r.kind);
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
        ['kind 7', { kind: 7 }],
        ['kind 255', { kind: 255 }],
        ...[1, 2, 3, 4, 5, 6].filter((k) => k !== r.kind).map((k): [string, { kind: number }] => [`kind ${k}`, { kind: k }]),
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
    // Only where the segment (and the padding after it) ends the file; the padding goes.
    const after = d.records.filter((r) => seg !== undefined && r.at >= seg.end);
    if (seg === undefined || after.some((r) => r.kind !== RecordKind.PAD)) continue;
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
      // whose DATA entries point at other bytes (another record's, or shifted into the
      // padding before the segment) is caught only by a block CRC.
      const forged = what === 'full flipped';
      const knownGap = what.startsWith('offsets all the same') || what === 'offsets unaligned' ? BLOCK_CRC_GAP : undefined;
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

/** Indexed block data flipped: reads without verifyReads do not check block CRCs (see the regression test). */
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
