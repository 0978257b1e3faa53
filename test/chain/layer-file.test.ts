/**
 * LayerFile on real files: create, append, sync, seal, reopen; recovery of a torn
 * tail written by hand; a record from another layer ends the log; map segments
 * every 4096 rows and never more than 65536 entries; identity checks on open.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { crc32 } from 'node:zlib';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FULL_SEGMENT_AFTER, LayerFile, sha256, type LayerIdentity } from '../../lib/chain/layer-file.js';
import { isDeltaDiskError } from '../../lib/errors.js';
import { decodeDeltaHeader } from '../../lib/format/delta-header.js';
import { HEADER_SLOT_SIZE, LOG_START, MAX_SEGMENT_ENTRIES } from '../../lib/format/limits.js';
import { decodeMapSegment } from '../../lib/format/map-segment.js';
import { decodeRecordHeader, encodeRecordHeader, layerTag, paddingAt, RECORD_HEADER_SIZE, RecordKind } from '../../lib/format/record.js';
import { nodeFileSystem } from '../../lib/io/node-file-system.js';
import { tempDir } from '../helpers/temp-dir.js';

const BS = 4096;
const BLOCKS = 80_000;

let dir: string;
let cleanup: () => void;
const open: LayerFile[] = [];

beforeEach(() => {
  ({ dir, cleanup } = tempDir('deltadisk-layer-'));
});
afterEach(async () => {
  for (const l of open.splice(0)) await l.release().catch(() => undefined);
  cleanup();
});

function identity(layerId = randomUUID()): LayerIdentity {
  return { diskId: '00000000-1111-4222-8333-444444444444', layerId, blockSize: BS, virtualSize: BLOCKS * BS };
}

async function create(file = 'd-000001.delta', id = identity(), parentId: string | null = null): Promise<LayerFile> {
  const l = await LayerFile.create(nodeFileSystem, dir, file, { ...id, parentId, parentFile: parentId === null ? null : 'parent.delta', base: null });
  open.push(l);
  return l;
}

async function reopen(l: { file: string; identity: LayerIdentity }, writable = true, parent: string | null | undefined = undefined): Promise<LayerFile> {
  const r = await LayerFile.open(nodeFileSystem, dir, l.file, l.identity, parent, { writable });
  open.push(r);
  return r;
}

const block = (fill: number) => Buffer.alloc(BS, fill);
const fileSize = (l: { file: string }) => fs.statSync(path.join(dir, l.file)).size;

/** block → [kind, content or undefined] as the layer's map says. */
async function contents(l: LayerFile): Promise<Map<number, string>> {
  const out = new Map<number, string>();
  const rows: [number, number, number][] = [];
  l.map.forEach((b, kind, row) => rows.push([b, kind, row]));
  for (const [b, kind, row] of rows) {
    if (kind === RecordKind.DATA) out.set(b, `data:${(await l.readRow(row))[0]}`);
    else if (kind === RecordKind.ZERO) out.set(b, 'zero');
    else out.set(b, `ref:${Buffer.from(l.records.hash(row)).toString('hex').slice(0, 8)}`);
  }
  return out;
}

/** A record laid out by hand per docs/FORMAT.md. */
function handRecord(tag: number, kind: number, seq: number, first: number, blocks: Buffer[], countOverride?: number): Buffer {
  const h = Buffer.alloc(RECORD_HEADER_SIZE);
  const payload = Buffer.concat(blocks);
  let crc = crc32(payload);
  if (kind === RecordKind.DATA || kind === RecordKind.BLOB) {
    const crcs = new Uint32Array(blocks.map((b) => crc32(b)));
    crc = crc32(new Uint8Array(crcs.buffer));
  }
  encodeRecordHeader(h, 0, kind as RecordKind, seq, first, countOverride ?? Math.max(1, blocks.length), payload.length, crc, tag);
  return Buffer.concat([h, payload]);
}

describe('LayerFile lifecycle', () => {
  it('a new layer is two header slots and an empty log', async () => {
    const l = await create();
    expect(fileSize(l)).toBe(LOG_START);
    expect(l.logEnd).toBe(LOG_START);
    const slot0 = decodeDeltaHeader(fs.readFileSync(path.join(dir, l.file)).subarray(0, HEADER_SLOT_SIZE))!;
    expect(slot0).toMatchObject({ layerId: l.id, generation: 1, sealed: false, logEnd: LOG_START, nextSeq: 1, lastSegment: 0 });
    const r = await reopen(l, false);
    expect(r.map.size).toBe(0);
  });

  it('refuses to create over an existing file', async () => {
    const l = await create();
    await expect(LayerFile.create(nodeFileSystem, dir, l.file, { ...identity(), parentId: null, parentFile: null, base: null })).rejects.toMatchObject({ code: 'ALREADY_EXISTS' });
  });

  it('reopening finds every record: DATA, ZERO, REF, BLOB, runs and overwrites', async () => {
    const l = await create();
    const hashed = block(0x77);
    await l.append([
      { kind: RecordKind.DATA, block: 10, data: [block(1), block(2), block(3)] },
      { kind: RecordKind.ZERO, block: 20, count: 5 },
    ]);
    await l.append([{ kind: RecordKind.BLOB, data: [hashed], hashes: [sha256(hashed)] }]);
    await l.append([{ kind: RecordKind.REF, block: 30, hashes: [sha256(hashed)] }]);
    await l.append([{ kind: RecordKind.DATA, block: 11, data: [block(9)] }]); // overwrites block 11
    await l.append([{ kind: RecordKind.ZERO, block: 12, count: 1 }]); // data becomes a zero marker
    await l.append([{ kind: RecordKind.DATA, block: 21, data: [block(4)] }]); // a zero marker becomes data
    await l.sync();
    const before = await contents(l);
    expect(before.get(11)).toBe('data:9');
    expect(before.size).toBe(3 + 5 + 1);
    expect(l.garbageBytes).toBe(2 * BS);
    const dataIn = (x: LayerFile): number => [...(x.map.blocks())].filter((b) => x.map.tag(b) === RecordKind.DATA).length;
    expect(l.dataBlocks).toBe(3);
    expect(l.dataBlocks).toBe(dataIn(l));
    await l.close();
    const r = await reopen(l);
    expect(await contents(r)).toEqual(before);
    expect(r.garbageBytes).toBe(2 * BS);
    expect(r.dataBlocks).toBe(3);
    expect(r.records.count).toBe(l.records.count);
  });

  it('reopening without a clean close (no map segment) finds the synced records by scanning', async () => {
    const l = await create();
    await l.append([{ kind: RecordKind.DATA, block: 0, data: [block(5)] }]);
    await l.append([{ kind: RecordKind.ZERO, block: 1, count: 1 }]);
    await l.sync();
    expect(l.header.lastSegment).toBe(0); // nothing indexed yet: the records are the log
    const r = await reopen(l, false);
    expect(await contents(r)).toEqual(new Map([[0, 'data:5'], [1, 'zero']]));
  });

  it('data written through one instance is read by a view of the same file at once', async () => {
    const l = await create();
    const rows = await l.append([{ kind: RecordKind.DATA, block: 3, data: [block(0x33)] }]);
    expect((await l.readRow(rows[0]!))[100]).toBe(0x33);
    expect(l.dataOffset(rows[0]!)).toBe(LOG_START + RECORD_HEADER_SIZE);
  });

  it('seal writes the snapshot tag and sealed flag durably to the other slot', async () => {
    const l = await create();
    await l.append([{ kind: RecordKind.DATA, block: 0, data: [block(1)] }]);
    await l.sync();
    const tag = { id: randomUUID(), name: 'before-upgrade', created: new Date().toISOString() };
    await l.seal(tag);
    expect(l.header).toMatchObject({ sealed: true, snapshot: tag, generation: 2 });
    const bytes = fs.readFileSync(path.join(dir, l.file));
    expect(decodeDeltaHeader(bytes.subarray(HEADER_SLOT_SIZE, 2 * HEADER_SLOT_SIZE))).toMatchObject({ generation: 2, sealed: true });
    expect(decodeDeltaHeader(bytes.subarray(0, HEADER_SLOT_SIZE))).toMatchObject({ generation: 1, sealed: false });
    const r = await reopen(l, false);
    expect(r.header).toMatchObject({ sealed: true, snapshot: tag });
    expect(await contents(r)).toEqual(new Map([[0, 'data:1']]));
  });

  it('a read-only layer refuses appends with READ_ONLY; a closed one too', async () => {
    const l = await create();
    const r = await reopen(l, false);
    await expect(r.append([{ kind: RecordKind.ZERO, block: 0, count: 1 }])).rejects.toMatchObject({ code: 'READ_ONLY' });
    await expect(r.sync()).rejects.toMatchObject({ code: 'READ_ONLY' });
    await l.close();
    await expect(l.append([{ kind: RecordKind.ZERO, block: 0, count: 1 }])).rejects.toMatchObject({ code: 'READ_ONLY' });
  });

  it('refuses malformed appends without writing anything', async () => {
    const l = await create();
    await expect(l.append([{ kind: RecordKind.ZERO, block: 0, count: 8193 }])).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(l.append([{ kind: RecordKind.DATA, block: 0, data: [Buffer.alloc(100)] }])).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(l.append([{ kind: RecordKind.DATA, block: 0, data: [] }])).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    expect(fileSize(l)).toBe(LOG_START);
    expect(l.logEnd).toBe(LOG_START);
    await l.append([{ kind: RecordKind.DATA, block: 0, data: [block(1)] }]);
    await l.close();
    expect(await contents(await reopen(l))).toEqual(new Map([[0, 'data:1']]));
  });
});

describe('LayerFile recovery of a torn tail', () => {
  async function twoRecords(): Promise<{ l: LayerFile; end: number }> {
    const l = await create();
    await l.append([{ kind: RecordKind.DATA, block: 0, data: [block(1)] }]);
    await l.append([{ kind: RecordKind.DATA, block: 1, data: [block(2)] }]);
    await l.sync();
    return { l, end: l.logEnd };
  }
  const expected = new Map([[0, 'data:1'], [1, 'data:2']]);
  const append = (l: LayerFile, bytes: Buffer) => fs.appendFileSync(path.join(dir, l.file), bytes);

  const torn: [string, (l: LayerFile) => Buffer][] = [
    ['half a record header', () => randomBytes(30)],
    ['zeros (a preallocated tail)', () => Buffer.alloc(3 * BS)],
    ['a record whose payload is cut off', (l) => handRecord(layerTag(l.id), RecordKind.DATA, l.nextSeq, 2, [block(3)]).subarray(0, RECORD_HEADER_SIZE + 100)],
    ['a record whose payload CRC fails', (l) => {
      const r = handRecord(layerTag(l.id), RecordKind.DATA, l.nextSeq, 2, [block(3)]);
      r[RECORD_HEADER_SIZE + 7] = 0xee;
      return r;
    }],
    ['a record with a damaged header', (l) => {
      const r = handRecord(layerTag(l.id), RecordKind.DATA, l.nextSeq, 2, [block(3)]);
      r[16] = 5; // block index, under the header CRC
      return r;
    }],
    ['a record out of sequence (a stale copy of an earlier one)', (l) => handRecord(layerTag(l.id), RecordKind.DATA, l.nextSeq - 1, 2, [block(3)])],
    ['a record with a gap in the sequence', (l) => handRecord(layerTag(l.id), RecordKind.DATA, l.nextSeq + 1, 2, [block(3)])],
    ['a record naming blocks past the end of the disk', (l) => handRecord(layerTag(l.id), RecordKind.ZERO, l.nextSeq, BLOCKS - 1, [], 2)],
    ['a DATA record whose length does not match its count', (l) => handRecord(layerTag(l.id), RecordKind.DATA, l.nextSeq, 2, [block(3)], 2)],
  ];

  for (const [what, tail] of torn) {
    it(`${what}: dropped, and truncated away durably on a writable open`, async () => {
      const { l, end } = await twoRecords();
      const extra = tail(l);
      append(l, extra);
      // A later, perfectly valid record after the damage must not rejoin the log either.
      append(l, handRecord(layerTag(l.id), RecordKind.DATA, l.nextSeq + 1, 7, [block(7)]));
      const ro = await reopen(l, false);
      expect(await contents(ro)).toEqual(expected);
      expect(fileSize(l)).toBe(end + extra.length + RECORD_HEADER_SIZE + BS); // read-only: untouched
      const rw = await reopen(l, true);
      expect(await contents(rw)).toEqual(expected);
      expect(fileSize(l)).toBe(end);
      // New records go where the torn tail was, and survive another reopen.
      await rw.append([{ kind: RecordKind.ZERO, block: 9, count: 1 }]);
      await rw.close();
      expect(await contents(await reopen(l, false))).toEqual(new Map([...expected, [9, 'zero']]));
    });
  }

  it('a valid hand-written record with the next sequence number is accepted (the scan is not just "drop the tail")', async () => {
    const { l } = await twoRecords();
    append(l, handRecord(layerTag(l.id), RecordKind.DATA, l.nextSeq, 2, [block(3)]));
    expect(await contents(await reopen(l, false))).toEqual(new Map([...expected, [2, 'data:3']]));
  });

  it('a record copied from another layer (wrong tag) ends the log', async () => {
    const { l } = await twoRecords();
    // Another layer whose last record has exactly the sequence number l expects next.
    const other = await create('d-000002.delta');
    while (other.nextSeq < l.nextSeq) await other.append([{ kind: RecordKind.ZERO, block: 50 + other.nextSeq, count: 1 }]);
    const at = other.logEnd;
    await other.append([{ kind: RecordKind.DATA, block: 2, data: [block(0x66)] }]);
    await other.sync();
    const foreign = fs.readFileSync(path.join(dir, other.file)).subarray(at, at + RECORD_HEADER_SIZE + BS);
    const parsed = decodeRecordHeader(foreign, 0, layerTag(other.id))!;
    expect(parsed).toMatchObject({ seq: l.nextSeq, block: 2, kind: RecordKind.DATA });
    append(l, foreign);
    append(l, handRecord(layerTag(l.id), RecordKind.DATA, l.nextSeq + 1, 7, [block(7)]));
    const r = await reopen(l, true);
    expect(await contents(r)).toEqual(expected);
    expect(fileSize(l)).toBe(r.logEnd);
  });

  it('a torn newer header slot falls back to the older one, losing nothing', async () => {
    const l = await create();
    await l.append([{ kind: RecordKind.DATA, block: 4, data: [block(4)] }]);
    await l.append([{ kind: RecordKind.ZERO, block: 5, count: 1 }]);
    await l.close(); // indexes the tail: segment + header generation 2 in slot 1
    const p = path.join(dir, l.file);
    const bytes = fs.readFileSync(p);
    expect(decodeDeltaHeader(bytes.subarray(HEADER_SLOT_SIZE, 2 * HEADER_SLOT_SIZE))!.generation).toBe(2);
    bytes[HEADER_SLOT_SIZE + 40] = bytes[HEADER_SLOT_SIZE + 40]! ^ 0xff;
    fs.writeFileSync(p, bytes);
    const r = await reopen(l, true);
    expect(r.header.generation).toBe(1);
    expect(await contents(r)).toEqual(new Map([[4, 'data:4'], [5, 'zero']]));
    await r.append([{ kind: RecordKind.ZERO, block: 6, count: 1 }]);
    await r.close();
    expect(await contents(await reopen(l, false))).toEqual(new Map([[4, 'data:4'], [5, 'zero'], [6, 'zero']]));
  });
});

describe('LayerFile padding (no write touches a sector of acknowledged records)', () => {
  it('sync ends the log on a 4 KiB boundary with a PAD record, which reopening reads as part of the log', async () => {
    const l = await create();
    await l.append([{ kind: RecordKind.ZERO, block: 3, count: 1 }]);
    const before = l.logEnd;
    await l.sync();
    expect(before % 4096).not.toBe(0);
    expect(l.logEnd).toBe(before + paddingAt(before));
    expect(l.logEnd % 4096).toBe(0);
    expect(fileSize(l)).toBe(l.logEnd);
    const pad = decodeRecordHeader(fs.readFileSync(path.join(dir, l.file)), before, layerTag(l.id))!;
    expect(pad).toMatchObject({ kind: RecordKind.PAD, seq: l.nextSeq - 1, count: 1, block: 0, payloadLength: l.logEnd - before - RECORD_HEADER_SIZE });
    const r = await reopen(l, false);
    expect(r.logEnd).toBe(l.logEnd);
    expect(await contents(r)).toEqual(new Map([[3, 'zero']]));
  });

  it('a gap shorter than a record header pads to the boundary after next', () => {
    expect(paddingAt(8192)).toBe(0);
    expect(paddingAt(8192 + 4096 - RECORD_HEADER_SIZE)).toBe(RECORD_HEADER_SIZE);
    expect(paddingAt(8192 + 4096 - RECORD_HEADER_SIZE + 1)).toBe(RECORD_HEADER_SIZE - 1 + 4096);
    expect(paddingAt(8193)).toBe(4095);
  });

  it('a log found ending off a boundary (padding lost, or an older file) is padded before anything is appended', async () => {
    const l = await create();
    await l.append([{ kind: RecordKind.DATA, block: 0, data: [block(1)] }]);
    const end = l.logEnd;
    await l.sync();
    await l.release();
    fs.truncateSync(path.join(dir, l.file), end); // as if the PAD had never been written
    const rw = await reopen(l, true);
    expect(rw.logEnd).toBe(end);
    await rw.append([{ kind: RecordKind.DATA, block: 1, data: [block(2)] }]);
    // The new record starts on the next boundary, not in the sector holding block 0's end.
    expect(rw.dataOffset(rw.map.num(1)) - RECORD_HEADER_SIZE).toBe(end + paddingAt(end));
    await rw.close();
    expect(await contents(await reopen(l, false))).toEqual(new Map([[0, 'data:1'], [1, 'data:2']]));
  });
});

describe('LayerFile map segments', () => {
  const zeros = (from: number, count: number) => ({ kind: RecordKind.ZERO, block: from, count }) as const;

  it('sync indexes the tail once 4096 rows are unindexed, not before', async () => {
    const l = await create();
    await l.append([zeros(0, 4095)]);
    await l.sync();
    expect(l.header.lastSegment).toBe(0);
    await l.append([zeros(4095, 1)]);
    await l.sync();
    expect(l.header.lastSegment).toBeGreaterThan(0);
    // The header ends the log at the segment; a PAD record takes the file to a 4 KiB boundary.
    expect(l.logEnd - l.header.logEnd).toBe(paddingAt(l.header.logEnd));
    expect(l.logEnd % 4096).toBe(0);
    expect(l.logEnd).toBe(fileSize(l));
    // Reopening reads the segment, not the records (nothing left to scan).
    const r = await reopen(l, false);
    expect(r.map.size).toBe(4096);
    expect(r.logEnd).toBe(l.logEnd);
  });

  it('the unindexed tail never exceeds one segment (65536 entries), even without syncs', async () => {
    const l = await create();
    for (let i = 0; i < 8; i++) await l.append([zeros(i * 8192, 8192)]);
    expect(l.header.lastSegment).toBe(0); // exactly 65536 unindexed rows: still one segment's worth
    await l.append([zeros(8 * 8192, 8192)]);
    const first = l.header.lastSegment;
    expect(first).toBeGreaterThan(0);
    await l.close();
    // Walk the segments on disk: each within the cap, together listing every row.
    const bytes = fs.readFileSync(path.join(dir, l.file));
    const slots = [decodeDeltaHeader(bytes.subarray(0, HEADER_SLOT_SIZE))!, decodeDeltaHeader(bytes.subarray(HEADER_SLOT_SIZE, 2 * HEADER_SLOT_SIZE))!];
    const header = slots[0]!.generation > slots[1]!.generation ? slots[0]! : slots[1]!;
    expect(header.generation).toBe(3);
    let at = header.lastSegment;
    const counts: number[] = [];
    while (at !== 0) {
      const rh = decodeRecordHeader(bytes, at, layerTag(l.id))!;
      expect(rh.kind).toBe(RecordKind.MAPSEG);
      const seg = decodeMapSegment(bytes.subarray(at + RECORD_HEADER_SIZE, at + RECORD_HEADER_SIZE + rh.payloadLength), BLOCKS, BS, undefined, at);
      expect(seg.count).toBeLessThanOrEqual(MAX_SEGMENT_ENTRIES);
      counts.unshift(seg.count);
      at = seg.prev;
    }
    expect(counts).toEqual([65536, 8192]);
    const r = await reopen(l, false);
    expect(r.map.size).toBe(9 * 8192);
  });

  it('segments chain: rows from several segments and a tail all come back', async () => {
    const l = await create();
    await l.append([zeros(0, 5000)]);
    await l.sync(); // segment 1
    await l.append([{ kind: RecordKind.DATA, block: 6000, data: [block(6)] }, zeros(6001, 4095)]);
    await l.sync(); // segment 2
    await l.append([{ kind: RecordKind.DATA, block: 0, data: [block(8)] }]); // tail, overwrites a zero
    await l.sync();
    const r = await reopen(l, false);
    expect(r.map.size).toBe(5000 + 4096);
    expect(r.map.tag(0)).toBe(RecordKind.DATA);
    expect((await r.readRow(r.map.num(0)))[0]).toBe(8);
    expect((await r.readRow(r.map.num(6000)))[0]).toBe(6);
  });
});

describe('LayerFile full map segments', () => {
  const zeros = (from: number, count: number) => ({ kind: RecordKind.ZERO, block: from, count }) as const;
  /** Everything an open rebuilds: rows in order, and the block map. */
  function state(l: LayerFile): string {
    const rows: string[] = [];
    for (let i = 0; i < l.records.count; i++) rows.push(`${l.records.kind(i)}:${l.records.block(i)}:${l.records.offset(i)}:${l.records.crc(i)}:${Buffer.from(l.records.hash(i)).toString('hex')}`);
    const map: string[] = [];
    l.map.forEach((b, kind, row) => map.push(`${b}:${kind}:${row}`));
    return `${rows.join(',')}|${map.join(',')}`;
  }

  it('an open reads at most FULL_SEGMENT_AFTER segments, however many closes wrote one, and rebuilds the same rows', async () => {
    let l = await create();
    const file = { file: l.file, identity: l.identity };
    const seen: number[] = [];
    for (let round = 0; round < 40; round++) {
      const b = (round * 7) % 50;
      const blob = block(0x40 + round);
      await l.append([
        { kind: RecordKind.DATA, block: b, data: [block(round), block(round + 1)] },
        zeros(100 + (round % 5), 2),
        { kind: RecordKind.BLOB, data: [blob], hashes: [sha256(blob)] },
        { kind: RecordKind.REF, block: 200 + round, hashes: [sha256(blob)] },
      ]);
      const before = state(l);
      const readBefore = await contents(l);
      await l.close();
      open.splice(open.indexOf(l), 1);
      l = await reopen(file);
      seen.push(l.segmentsToRead);
      expect(state(l)).toBe(before);
      expect(await contents(l)).toEqual(readBefore);
    }
    expect(Math.max(...seen)).toBe(FULL_SEGMENT_AFTER);
    expect(seen.filter((n) => n === 1).length).toBeGreaterThan(1); // full segments were written, more than once
    const r = await reopen(file, false);
    expect(state(r)).toBe(state(l));
  });

  it('a layer with more rows than one segment holds keeps chaining segments', async () => {
    let l = await create();
    const file = { file: l.file, identity: l.identity };
    for (let k = 0; k < 14; k++) await l.append([zeros(k * 5000, 5000)]);
    expect(l.records.count).toBeGreaterThan(MAX_SEGMENT_ENTRIES);
    for (let round = 0; round < FULL_SEGMENT_AFTER + 2; round++) {
      await l.append([{ kind: RecordKind.DATA, block: round, data: [block(round)] }]);
      await l.close();
      open.splice(open.indexOf(l), 1);
      l = await reopen(file);
    }
    expect(l.segmentsToRead).toBeGreaterThan(FULL_SEGMENT_AFTER);
    expect((await l.readRow(l.map.num(3)))[0]).toBe(3);
  });
});

describe('LayerFile identity checks on open', () => {
  it('a file of another disk, another layer, block size, size or parent is CHAIN_CORRUPT', async () => {
    const l = await create('d-000001.delta', identity(), '11111111-0000-4000-8000-000000000000');
    await l.close();
    const id = l.identity;
    const tries: [string, LayerIdentity, string | null | undefined][] = [
      ['disk', { ...id, diskId: '99999999-1111-4222-8333-444444444444' }, undefined],
      ['layer', { ...id, layerId: randomUUID() }, undefined],
      ['block size', { ...id, blockSize: 2 * BS }, undefined],
      ['virtual size', { ...id, virtualSize: id.virtualSize + BS }, undefined],
      ['parent', id, '22222222-0000-4000-8000-000000000000'],
      ['parent (base)', id, null],
    ];
    for (const [what, expected, parent] of tries) {
      const err = await LayerFile.open(nodeFileSystem, dir, l.file, expected, parent, { writable: false }).catch((e: unknown) => e);
      expect(isDeltaDiskError(err, 'CHAIN_CORRUPT'), what).toBe(true);
    }
    const ok = await LayerFile.open(nodeFileSystem, dir, l.file, id, '11111111-0000-4000-8000-000000000000', { writable: false });
    await ok.release();
  });

  it('a missing file is NOT_FOUND, a directory or symlink UNSAFE_PATH', async () => {
    const id = identity();
    const opts = { writable: false };
    await expect(LayerFile.open(nodeFileSystem, dir, 'missing.delta', id, undefined, opts)).rejects.toMatchObject({ code: 'NOT_FOUND' });
    fs.mkdirSync(path.join(dir, 'dir.delta'));
    await expect(LayerFile.open(nodeFileSystem, dir, 'dir.delta', id, undefined, opts)).rejects.toMatchObject({ code: 'UNSAFE_PATH' });
    const l = await create();
    fs.symlinkSync(l.file, path.join(dir, 'link.delta'));
    await expect(LayerFile.open(nodeFileSystem, dir, 'link.delta', l.identity, undefined, opts)).rejects.toMatchObject({ code: 'UNSAFE_PATH' });
  });

  it('a file shorter than a header slot is TRUNCATED; one with no intact header CHAIN_CORRUPT', async () => {
    const l = await create();
    await l.close();
    const p = path.join(dir, l.file);
    const opts = { writable: false };
    fs.truncateSync(p, 100);
    await expect(LayerFile.open(nodeFileSystem, dir, l.file, l.identity, undefined, opts)).rejects.toMatchObject({ code: 'TRUNCATED' });
    fs.writeFileSync(p, randomBytes(3 * HEADER_SLOT_SIZE));
    await expect(LayerFile.open(nodeFileSystem, dir, l.file, l.identity, undefined, opts)).rejects.toMatchObject({ code: 'CHAIN_CORRUPT' });
  });

  it('header slots of two different layers are CHAIN_CORRUPT', async () => {
    const a = await create('a.delta');
    const b = await create('b.delta');
    await b.updateHeader({}); // generation 2 in slot 1
    await a.close();
    await b.close();
    const bytes = fs.readFileSync(path.join(dir, a.file));
    fs.readFileSync(path.join(dir, b.file)).copy(bytes, HEADER_SLOT_SIZE, HEADER_SLOT_SIZE, 2 * HEADER_SLOT_SIZE);
    fs.writeFileSync(path.join(dir, a.file), bytes);
    await expect(LayerFile.open(nodeFileSystem, dir, a.file, a.identity, undefined, { writable: false })).rejects.toMatchObject({
      code: 'CHAIN_CORRUPT',
    });
  });

  it('a header whose log end lies past the end of the file is TRUNCATED', async () => {
    const l = await create();
    await l.append([{ kind: RecordKind.DATA, block: 0, data: [block(1)] }]);
    await l.close();
    fs.truncateSync(path.join(dir, l.file), l.header.logEnd - 1);
    await expect(LayerFile.open(nodeFileSystem, dir, l.file, l.identity, undefined, { writable: false })).rejects.toMatchObject({
      code: 'TRUNCATED',
    });
  });
});

describe('LayerFile header changes that cannot be written', () => {
  it('a header too large for its slot fails before anything changes, and loses no record', async () => {
    const l = await create();
    await l.append([{ kind: RecordKind.DATA, block: 0, data: [block(1)] }]);
    await l.sync();
    const before = { logEnd: l.logEnd, header: l.header, size: fileSize(l) };
    // No valid tag is this large; the encoder's own bound is what is tested.
    const tag = { id: randomUUID(), name: 'x'.repeat(HEADER_SLOT_SIZE), created: 'now' };
    await expect(l.seal(tag)).rejects.toMatchObject({ code: 'LIMIT_EXCEEDED' });
    expect({ logEnd: l.logEnd, header: l.header, size: fileSize(l) }).toEqual(before);
    // The layer carries on; everything written before and after comes back.
    await l.append([{ kind: RecordKind.DATA, block: 1, data: [block(2)] }]);
    await l.close();
    expect(await contents(await reopen(l, false))).toEqual(new Map([[0, 'data:1'], [1, 'data:2']]));
  });
});
