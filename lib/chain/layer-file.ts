/**
 * One delta file: a layer of the chain, opened, recovered and appended to.
 *
 * Guarantees (docs/FORMAT.md has the byte layout):
 *  - Data is only ever appended; a byte that a durable header or segment points at
 *    is never rewritten. Views opened earlier keep reading correct data while the
 *    layer grows.
 *  - Opening finds the newest valid header slot, loads the map segments it points
 *    at (all of which were durable before the header was written), then scans the
 *    records after them, accepting each only if its sequence number, header CRC and
 *    payload CRCs hold. The first record that fails ends the log: a torn tail from a
 *    crash is dropped, never served. A writable open truncates it away durably
 *    before anything new is appended, so stale bytes can never rejoin the log.
 *  - `sync()` makes every appended record durable (one fdatasync). Every few thousand
 *    records a map segment is appended, synced, and only then the header pointing at
 *    it is written (to the other slot) and synced.
 *  - No write ever touches a 4 KiB sector (LOG_ALIGN) holding records that may have
 *    been acknowledged, so even a torn write that garbles whole sectors loses none:
 *    `sync()` and every map segment end the log on a boundary with a PAD record, and
 *    a log found ending elsewhere (a crash before the padding, an older file) is
 *    padded and synced before anything is appended to it.
 *  - A failed write or fsync breaks the handle (GuardedHandle): the layer refuses
 *    further changes until the disk is reopened.
 */
import { createHash } from 'node:crypto';
import path from 'node:path';
import { crc32 } from 'node:zlib';
import { DeltaDiskError, fromSystemError } from '../errors.js';
import { decodeDeltaHeader, encodeDeltaHeader, type DeltaHeader, type SnapshotTag } from '../format/delta-header.js';
import { HEADER_SLOT_SIZE, LOG_ALIGN, LOG_START, MAX_RECORD_PAYLOAD, MAX_SEGMENT_ENTRIES } from '../format/limits.js';
import { decodeMapSegment, encodeMapSegment, HASH_SIZE, type MapSegment } from '../format/map-segment.js';
import {
  decodeRecordHeader,
  encodePadRecord,
  encodeRecordHeader,
  layerTag,
  paddingAt,
  RECORD_HEADER_SIZE,
  RecordKind,
  type RecordHeader,
} from '../format/record.js';
import type { FileHandle, FileSystem } from '../io/file-system.js';
import { isDirectAligned } from '../io/aligned-buffer.js';
import { alignedPool } from '../io/buffer-pool.js';
import { GuardedHandle } from '../io/guarded-handle.js';
import { readExactly, readUpTo } from '../io/positional.js';
import { BlockTable } from './block-table.js';
import { RecordTable } from './record-table.js';

/** Append a map segment once this many rows, or this many log bytes, are unindexed. */
const SEGMENT_EVERY_ROWS = 4096;
const SEGMENT_EVERY_BYTES = 64 * 1024 * 1024;
/**
 * Segments an open reads, at most, before the next segment written lists every row
 * (a full one) instead of the tail alone, for a layer whose rows fit in one segment.
 * A layer that takes a merge per backup gains a segment each time: without full
 * segments its open would read them all, one after another, a year of daily
 * backups later.
 */
export const FULL_SEGMENT_AFTER = 16;
/** Most blocks one `append` may add; callers batch larger writes. */
export const MAX_APPEND_ROWS = 8192;
/** Tail scanning reads the file in windows of this size. */
const SCAN_WINDOW = 4 * 1024 * 1024;
/**
 * Bytes read along with a map segment's record header. Opening a layer walks its
 * segments newest to oldest; an incremental one (a sync's worth of rows: ~9 KB for
 * the hundred-odd blocks a backup's anchor merge adds) then costs one read, not two.
 */
const SEGMENT_READ_AHEAD = 16 * 1024;
/** A `direct` append of at least this much goes past the page cache. */
const DIRECT_APPEND_BYTES = 256 * 1024;

export interface LayerIdentity {
  readonly diskId: string;
  readonly layerId: string;
  readonly blockSize: number;
  readonly virtualSize: number;
}

export interface LayerOpenOptions {
  readonly writable: boolean;
}

/** A run of consecutive blocks to append as one record. */
export type Run =
  | {
      readonly kind: typeof RecordKind.DATA;
      readonly block: number;
      readonly data: readonly Uint8Array[];
      readonly hashes?: readonly Uint8Array[] | undefined;
      /**
       * The blocks' CRC-32s when the caller computed them already (the write plan,
       * merges and compaction, from the rows they read and checked): trusted, so they must be the CRCs of exactly these bytes, which
       * must not change until `append` settles; a wrong one fails the block's reads.
       */
      readonly crcs?: readonly number[] | undefined;
    }
  | { readonly kind: typeof RecordKind.BLOB; readonly data: readonly Uint8Array[]; readonly hashes: readonly Uint8Array[] }
  | { readonly kind: typeof RecordKind.ZERO; readonly block: number; readonly count: number }
  | { readonly kind: typeof RecordKind.REF; readonly block: number; readonly hashes: readonly Uint8Array[] };

export function sha256(data: Uint8Array): Buffer {
  return createHash('sha256').update(data).digest();
}

/** CRC of a DATA/BLOB payload: the CRC-32 of the blocks' CRC-32s (little-endian u32s). */
function runCrc(crcs: Uint32Array): number {
  return crc32(new Uint8Array(crcs.buffer, crcs.byteOffset, crcs.byteLength));
}

export class LayerFile {
  readonly path: string;
  readonly file: string;
  readonly identity: LayerIdentity;
  readonly records = new RecordTable();
  /** Block → (record kind, row in `records`), for the newest record of each block. */
  readonly map = new BlockTable();

  readonly #handle: GuardedHandle;
  readonly #fs: FileSystem;
  /** A second handle for direct appends: opened on first use; null once refused. */
  #direct: FileHandle | null | undefined;
  readonly #tag: number;
  readonly #maxBlocks: number;
  #writable: boolean;
  #header: DeltaHeader;
  #slot: 0 | 1;
  #logEnd: number;
  #nextSeq: number;
  /** Rows listed in durable segments; rows after this are the unindexed tail. */
  #indexedRows: number;
  /** Segments an open would read now: the newest full one and those after it, or all. */
  #segmentsToRead = 0;
  #tailBytes = 0;
  /** Bytes of block data whose rows no block points at any more. */
  #garbageBytes = 0;
  #dataBlocks = 0;
  /**
   * True while the bytes just before the log end may be acknowledged (after opening,
   * `sync()` or a map segment): the next write there must start on a fresh sector.
   */
  #endExposed = true;
  #refs = 1;
  #closed = false;

  private constructor(fs: FileSystem, handle: FileHandle, file: string, header: DeltaHeader, slot: 0 | 1, writable: boolean) {
    this.#fs = fs;
    this.#handle = handle instanceof GuardedHandle ? handle : new GuardedHandle(handle);
    this.path = handle.path;
    this.file = file;
    this.#header = header;
    this.#slot = slot;
    this.identity = {
      diskId: header.diskId,
      layerId: header.layerId,
      blockSize: header.blockSize,
      virtualSize: header.virtualSize,
    };
    this.#tag = layerTag(header.layerId);
    this.#maxBlocks = Math.ceil(header.virtualSize / header.blockSize);
    this.#writable = writable;
    this.#logEnd = header.logEnd;
    this.#nextSeq = header.nextSeq;
    this.#indexedRows = 0;
  }

  /** Map segments an open of this file reads now (see FULL_SEGMENT_AFTER). */
  get segmentsToRead(): number {
    return this.#segmentsToRead;
  }

  get header(): DeltaHeader {
    return this.#header;
  }

  get id(): string {
    return this.#header.layerId;
  }

  get blockSize(): number {
    return this.#header.blockSize;
  }

  /** Offset at which the next record will be appended (= bytes of log in use). */
  get logEnd(): number {
    return this.#logEnd;
  }

  /** Sequence number the next record will carry. */
  get nextSeq(): number {
    return this.#nextSeq;
  }

  get garbageBytes(): number {
    return this.#garbageBytes;
  }

  /** Blocks whose current record in this layer is data (not a zero marker or a reference). */
  get dataBlocks(): number {
    return this.#dataBlocks;
  }

  get broken(): boolean {
    return this.#handle.broken;
  }

  /** The raw handle, for positional reads of block data by views. */
  get handle(): FileHandle {
    return this.#handle;
  }

  /** File offset of the data of DATA/BLOB row `row`. */
  dataOffset(row: number): number {
    return this.records.offset(row);
  }

  // ---------------------------------------------------------------- lifecycle

  /**
   * Creates a new, empty layer file. The file and its directory entry are durable
   * when this resolves.
   * @throws ALREADY_EXISTS if the file exists.
   */
  static async create(
    fs: FileSystem,
    dir: string,
    file: string,
    init: LayerIdentity & {
      readonly parentId: string | null;
      readonly parentFile: string | null;
      readonly base: DeltaHeader['base'];
    },
  ): Promise<LayerFile> {
    const p = path.join(dir, file);
    const header: DeltaHeader = {
      diskId: init.diskId,
      layerId: init.layerId,
      parentId: init.parentId,
      parentFile: init.parentFile,
      base: init.base,
      blockSize: init.blockSize,
      virtualSize: init.virtualSize,
      generation: 1,
      sealed: false,
      snapshot: null,
      logEnd: LOG_START,
      nextSeq: 1,
      lastSegment: 0,
      created: new Date().toISOString(),
    };
    let handle: FileHandle;
    try {
      handle = await fs.open(p, 'createExclusive');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') {
        throw new DeltaDiskError('ALREADY_EXISTS', `${p} already exists`, { path: p });
      }
      throw fromSystemError(err, p, 'creating delta failed');
    }
    const layer = new LayerFile(fs, handle, file, header, 0, true);
    try {
      await layer.#handle.write([encodeDeltaHeader(header), Buffer.alloc(HEADER_SLOT_SIZE)], 0);
      await layer.#handle.datasync();
      await fs.syncDir(dir).catch((err: unknown) => {
        throw fromSystemError(err, dir, 'syncing directory failed');
      });
    } catch (err) {
      await handle.close().catch(() => undefined);
      await fs.unlink(p).catch(() => undefined);
      throw err;
    }
    return layer;
  }

  /**
   * Opens and recovers a layer file.
   * @param expected identity the descriptor promises; any difference is CHAIN_CORRUPT.
   * @param expectedParent the parent id the descriptor names (undefined: do not check).
   */
  static async open(
    fs: FileSystem,
    dir: string,
    file: string,
    expected: LayerIdentity,
    expectedParent: string | null | undefined,
    options: LayerOpenOptions,
  ): Promise<LayerFile> {
    const p = path.join(dir, file);
    const st = await fs.lstat(p).catch((err: unknown) => {
      throw fromSystemError(err, p, 'opening delta failed');
    });
    if (!st.isFile) throw new DeltaDiskError('UNSAFE_PATH', `${p} is not a regular file`, { path: p });
    let handle: FileHandle;
    try {
      handle = await fs.open(p, options.writable ? 'readWrite' : 'read');
    } catch (err) {
      throw fromSystemError(err, p, 'opening delta failed');
    }
    try {
      const { header, slot } = await readNewestHeader(handle, p);
      const mismatch =
        header.diskId !== expected.diskId
          ? `belongs to disk ${header.diskId}, not ${expected.diskId}`
          : header.layerId !== expected.layerId
            ? `is layer ${header.layerId}, not ${expected.layerId}`
            : header.blockSize !== expected.blockSize
              ? `has block size ${header.blockSize}, not ${expected.blockSize}`
              : header.virtualSize !== expected.virtualSize
                ? `has virtual size ${header.virtualSize}, not ${expected.virtualSize}`
                : expectedParent !== undefined && header.parentId !== expectedParent
                  ? `names parent ${header.parentId ?? 'base'}, but the descriptor says ${expectedParent ?? 'base'}`
                  : undefined;
      if (mismatch !== undefined) {
        throw new DeltaDiskError('CHAIN_CORRUPT', `${p} ${mismatch}`, { path: p, layer: expected.layerId });
      }
      const layer = new LayerFile(fs, handle, file, header, slot, options.writable);
      await layer.#load();
      return layer;
    } catch (err) {
      await handle.close().catch(() => undefined);
      throw err;
    }
  }

  /** Another user of this open layer (a snapshot view); balanced by `release()`. */
  retain(): this {
    this.#refs++;
    return this;
  }

  /** Drops one reference; the file is closed when the last one goes. */
  async release(): Promise<void> {
    if (--this.#refs > 0 || this.#closed) return;
    this.#closed = true;
    await this.#direct?.close().catch(() => undefined);
    await this.#handle.close().catch(() => undefined);
  }

  /**
   * Indexes the tail (so the next open is fast) and drops the opener's reference.
   * A broken layer is closed without writing anything.
   */
  async close(): Promise<void> {
    await this.#indexTail();
    await this.release();
  }

  /**
   * Indexes the tail, as `close` does, and takes no more appends: the disk gave up
   * its writer lock and keeps the layer open for reading (Disk.downgrade).
   */
  async stopWriting(): Promise<void> {
    try {
      await this.#indexTail();
    } finally {
      this.#writable = false;
    }
  }

  async #indexTail(): Promise<void> {
    if (this.#writable && !this.#closed && !this.#handle.broken && this.#indexedRows < this.records.count) {
      await this.#handle.datasync();
      await this.#writeSegments();
    }
  }

  // ---------------------------------------------------------------- loading

  async #load(): Promise<void> {
    const h = this.#header;
    if (h.logEnd < LOG_START) this.#corrupt(`header log end ${h.logEnd} lies inside the header area`);
    const size = (await this.#handle.stat()).size;
    if (h.logEnd > size) {
      // The header is intact and vouches for records the file no longer has: cut off.
      throw new DeltaDiskError('TRUNCATED', `${this.path}: header log end ${h.logEnd} lies past the end of the file (${size} bytes)`, {
        path: this.path,
        offset: size,
        layer: this.id,
      });
    }

    // Segments, newest first, then applied oldest first.
    const segments: { seg: MapSegment; at: number; recordEnd: number }[] = [];
    let at = h.lastSegment;
    while (at !== 0) {
      const { seg, recordEnd } = await this.#readSegment(at, h.logEnd);
      segments.push({ seg, at, recordEnd });
      if (seg.full) break;
      at = seg.prev;
    }
    if (segments.length === 0 && h.logEnd !== LOG_START) {
      this.#corrupt(`header log end ${h.logEnd} without any map segment`);
    }
    if (segments.length > 0 && segments[0]!.recordEnd !== h.logEnd) {
      this.#corrupt(`header log end ${h.logEnd} does not follow its newest map segment`);
    }
    let expectedFirst = LOG_START;
    let expectedSeq = 1;
    this.records.reserve(segments.reduce((n, x) => n + x.seg.count, 0));
    for (let i = segments.length - 1; i >= 0; i--) {
      const { seg, at: segAt, recordEnd } = segments[i]!;
      if (!seg.full && (seg.first !== expectedFirst || seg.firstSeq !== expectedSeq)) {
        this.#corrupt(`map segment at ${segAt} does not continue the previous one`, segAt);
      }
      this.#applySegment(seg);
      expectedFirst = recordEnd;
      expectedSeq = this.#seqAfterSegment(segAt);
    }
    // The header's next sequence number is the one after its newest segment (1 with
    // none); anything else would make the tail scan drop valid records as torn.
    if (h.nextSeq !== expectedSeq) {
      this.#corrupt(`header expects record number ${h.nextSeq} next, but its newest map segment is followed by number ${expectedSeq}`);
    }
    this.#indexedRows = this.records.count;
    this.#segmentsToRead = segments.length;
    await this.#scanTail(size);
  }

  #segmentSeqs = new Map<number, number>();

  /** Sequence number that follows the MAPSEG record at `at` (remembered while reading it). */
  #seqAfterSegment(at: number): number {
    return this.#segmentSeqs.get(at)! + 1;
  }

  async #readSegment(at: number, logEnd: number): Promise<{ seg: MapSegment; recordEnd: number }> {
    if (at < LOG_START || at + RECORD_HEADER_SIZE > logEnd) this.#corrupt(`map segment pointer ${at} is out of range`, at);
    // The record header and, in the same read, what follows it up to
    // SEGMENT_READ_AHEAD: the whole of an incremental segment, usually.
    const head = await readUpTo(this.#handle, at, Math.min(RECORD_HEADER_SIZE + SEGMENT_READ_AHEAD, logEnd - at));
    const rh = head.length < RECORD_HEADER_SIZE ? undefined : decodeRecordHeader(head, 0, this.#tag);
    if (rh === undefined || rh.kind !== RecordKind.MAPSEG || rh.count !== 1 || rh.block !== 0) {
      this.#corrupt(`no intact map segment at offset ${at}`, at);
    }
    const recordEnd = at + RECORD_HEADER_SIZE + rh.payloadLength;
    if (recordEnd > logEnd) this.#corrupt(`map segment at ${at} runs past the log end`, at);
    const payload =
      recordEnd - at <= head.length
        ? head.subarray(RECORD_HEADER_SIZE, recordEnd - at)
        : await readExactly(this.#handle, at + RECORD_HEADER_SIZE, rh.payloadLength);
    if (crc32(payload) !== rh.payloadCrc) {
      throw new DeltaDiskError('CHECKSUM_MISMATCH', `${this.path}: map segment at ${at} fails its checksum`, {
        path: this.path,
        offset: at,
        layer: this.id,
      });
    }
    const seg = decodeMapSegment(payload, this.#maxBlocks, this.blockSize, this.path, at);
    this.#segmentSeqs.set(at, rh.seq);
    if (seg.firstSeq + 0 > rh.seq) this.#corrupt(`map segment at ${at} lists records newer than itself`, at);
    return { seg, recordEnd };
  }

  #applySegment(seg: MapSegment): void {
    const first = this.records.pushMany(seg);
    // What #addRow does for each row, in one loop.
    const { set, replaced } = this.map.assign(seg.blocks, seg.kinds, first, seg.count, RecordKind.BLOB, RecordKind.DATA);
    this.#garbageBytes += replaced * this.blockSize;
    this.#dataBlocks += set - replaced;
  }

  /** Adds a row and points the map at it (BLOB rows have no block), keeping the counts as #applySegment does. */
  #addRow(kind: RecordKind, block: number, offset: number, crc: number, hash: Uint8Array | undefined): number {
    const row = this.records.push(kind, block, offset, crc, hash);
    if (kind !== RecordKind.BLOB) {
      const old = this.map.tag(block);
      if (old === RecordKind.DATA) this.#garbageBytes += this.blockSize;
      this.#dataBlocks += (kind === RecordKind.DATA ? 1 : 0) - (old === RecordKind.DATA ? 1 : 0);
      this.map.set(block, kind, row);
    }
    return row;
  }

  /** Validates the shape of a record header against this layer; undefined if impossible. */
  #validShape(rh: RecordHeader): boolean {
    const bs = this.blockSize;
    switch (rh.kind) {
      case RecordKind.DATA:
        return rh.payloadLength === rh.count * bs && rh.block + rh.count <= this.#maxBlocks;
      case RecordKind.BLOB:
        return rh.payloadLength === rh.count * bs && rh.block === 0;
      case RecordKind.ZERO:
        return rh.payloadLength === 0 && rh.block + rh.count <= this.#maxBlocks;
      case RecordKind.REF:
        return rh.payloadLength === rh.count * HASH_SIZE && rh.block + rh.count <= this.#maxBlocks;
      case RecordKind.MAPSEG:
      case RecordKind.PAD:
        return rh.count === 1 && rh.block === 0;
    }
  }

  /**
   * Scans records after the indexed part; stops at the first one that is not an
   * intact, in-sequence record of this layer. Data found there is hashed (the tail
   * is at most ~64 MiB), so references into it resolve whatever the open mode.
   */
  async #scanTail(fileSize: number): Promise<void> {
    let pos = this.#logEnd;
    let seq = this.#nextSeq;
    let window: Buffer = Buffer.alloc(0);
    let windowAt = pos;
    const bytesAt = async (at: number, len: number): Promise<Buffer | undefined> => {
      if (at + len > fileSize) return undefined;
      if (at >= windowAt && at + len <= windowAt + window.length) {
        return window.subarray(at - windowAt, at - windowAt + len);
      }
      if (len > SCAN_WINDOW) return readExactly(this.#handle, at, len);
      window = await readUpTo(this.#handle, at, Math.min(SCAN_WINDOW, fileSize - at));
      windowAt = at;
      return window.length >= len ? window.subarray(0, len) : undefined;
    };
    const bs = this.blockSize;
    for (;;) {
      const hb = await bytesAt(pos, RECORD_HEADER_SIZE);
      if (hb === undefined) break;
      const rh = decodeRecordHeader(hb, 0, this.#tag);
      if (rh === undefined || rh.seq !== seq || !this.#validShape(rh)) break;
      // The writer indexes before the unindexed rows would outgrow one map segment
      // (`append`), so a tail listing more was not written by it: a crafted ZERO
      // record of 2^32 - 1 blocks would otherwise cost billions of rows.
      const rows = rh.kind === RecordKind.MAPSEG || rh.kind === RecordKind.PAD ? 0 : rh.count;
      if (this.records.count - this.#indexedRows + rows > MAX_SEGMENT_ENTRIES) break;
      const payload = await bytesAt(pos + RECORD_HEADER_SIZE, rh.payloadLength);
      if (payload === undefined) break;
      const dataAt = pos + RECORD_HEADER_SIZE;
      if (rh.kind === RecordKind.DATA || rh.kind === RecordKind.BLOB) {
        const crcs = new Uint32Array(rh.count);
        for (let i = 0; i < rh.count; i++) crcs[i] = crc32(payload.subarray(i * bs, (i + 1) * bs));
        if (runCrc(crcs) !== rh.payloadCrc) break;
        for (let i = 0; i < rh.count; i++) {
          const block = payload.subarray(i * bs, (i + 1) * bs);
          this.#addRow(rh.kind, rh.kind === RecordKind.BLOB ? 0 : rh.block + i, dataAt + i * bs, crcs[i]!, sha256(block));
        }
      } else {
        if (crc32(payload) !== rh.payloadCrc) break;
        if (rh.kind === RecordKind.ZERO) {
          for (let i = 0; i < rh.count; i++) this.#addRow(RecordKind.ZERO, rh.block + i, pos, 0, undefined);
        } else if (rh.kind === RecordKind.REF) {
          for (let i = 0; i < rh.count; i++) {
            this.#addRow(RecordKind.REF, rh.block + i, pos, 0, payload.subarray(i * HASH_SIZE, (i + 1) * HASH_SIZE));
          }
        }
        // A MAPSEG in the tail was written but never made current by a header; the
        // rows it lists are scanned here anyway, and the next segment re-lists them.
        // A PAD holds nothing.
      }
      pos += RECORD_HEADER_SIZE + rh.payloadLength;
      seq++;
    }
    this.#tailBytes = pos - this.#logEnd;
    this.#logEnd = pos;
    this.#nextSeq = seq;
    if (pos < fileSize && this.#writable) {
      // Durably cut the torn tail before anything new lands after `pos`; otherwise
      // a later crash could leave stale bytes that parse as records of this layer.
      await this.#handle.truncate(pos);
      await this.#handle.datasync();
    }
  }

  // ---------------------------------------------------------------- appending

  #assertWritable(): void {
    if (!this.#writable || this.#closed) {
      throw new DeltaDiskError('READ_ONLY', `${this.path} is not open for writing`, { path: this.path, layer: this.id });
    }
  }

  /**
   * Appends runs as records at the end of the log, in one write. Not durable until
   * `sync()`. On failure nothing in memory changes and the handle is broken.
   *
   * `direct` (a merge's copy: data written once, not read back soon) writes a batch
   * of 256 KiB or more past the page cache when the log ends on a LOG_ALIGN boundary:
   * the records and a PAD to the next boundary are laid out in an aligned buffer
   * and written through a second, direct handle, counted by the guarded one (its
   * `datasync` covers them; a failure breaks it). Nothing changes for the log: the
   * same records, and the PAD `sync()` would have added. Where direct writes are
   * refused, the batch goes through the page cache.
   * @returns the rows added, in order.
   */
  async append(runs: readonly Run[], options: { direct?: boolean } = {}): Promise<number[]> {
    this.#assertWritable();
    if (runs.length === 0) return [];
    const adding = runs.reduce((n, r) => n + (r.kind === RecordKind.ZERO ? r.count : r.kind === RecordKind.REF ? r.hashes.length : r.data.length), 0);
    if (adding > MAX_APPEND_ROWS) {
      throw new DeltaDiskError('INVALID_ARGUMENT', `append of ${adding} blocks exceeds ${MAX_APPEND_ROWS}; split it`);
    }
    if (this.records.count - this.#indexedRows + adding > MAX_SEGMENT_ENTRIES) {
      // Index the tail now so that one segment can always list it.
      await this.#handle.datasync();
      await this.#writeSegments();
    }
    await this.#padExposedEnd();
    const bs = this.blockSize;
    const headers = Buffer.allocUnsafe(runs.length * RECORD_HEADER_SIZE);
    const iov: Uint8Array[] = [];
    type Pending = { kind: RecordKind; block: number; offset: number; crc: number; hash: Uint8Array | undefined };
    const pending: Pending[] = [];
    let pos = this.#logEnd;
    let seq = this.#nextSeq;
    runs.forEach((run, r) => {
      const at = r * RECORD_HEADER_SIZE;
      const recordAt = pos;
      const dataAt = pos + RECORD_HEADER_SIZE;
      let payloadLength: number;
      if (run.kind === RecordKind.DATA || run.kind === RecordKind.BLOB) {
        const count = run.data.length;
        payloadLength = count * bs;
        if (count === 0 || payloadLength > MAX_RECORD_PAYLOAD) throw new DeltaDiskError('INVALID_ARGUMENT', `run of ${count} blocks`);
        const crcs = new Uint32Array(count);
        const known = run.kind === RecordKind.DATA ? run.crcs : undefined;
        if (known !== undefined && known.length !== count) throw new DeltaDiskError('INVALID_ARGUMENT', `${known.length} CRCs for ${count} blocks`);
        for (let i = 0; i < count; i++) {
          const d = run.data[i]!;
          if (d.length !== bs) throw new DeltaDiskError('INVALID_ARGUMENT', `block data of ${d.length} bytes, expected ${bs}`);
          crcs[i] = known === undefined ? crc32(d) : known[i]!;
          pending.push({
            kind: run.kind,
            block: run.kind === RecordKind.BLOB ? 0 : run.block + i,
            offset: dataAt + i * bs,
            crc: crcs[i]!,
            hash: run.hashes?.[i],
          });
        }
        const first = run.kind === RecordKind.BLOB ? 0 : run.block;
        encodeRecordHeader(headers, at, run.kind, seq, first, count, payloadLength, runCrc(crcs), this.#tag);
        iov.push(headers.subarray(at, at + RECORD_HEADER_SIZE), ...run.data);
      } else if (run.kind === RecordKind.ZERO) {
        payloadLength = 0;
        encodeRecordHeader(headers, at, run.kind, seq, run.block, run.count, 0, 0, this.#tag);
        iov.push(headers.subarray(at, at + RECORD_HEADER_SIZE));
        for (let i = 0; i < run.count; i++) pending.push({ kind: run.kind, block: run.block + i, offset: recordAt, crc: 0, hash: undefined });
      } else {
        const payload = Buffer.concat(run.hashes.map((h) => Buffer.from(h.buffer, h.byteOffset, h.byteLength)));
        payloadLength = payload.length;
        encodeRecordHeader(headers, at, run.kind, seq, run.block, run.hashes.length, payloadLength, crc32(payload), this.#tag);
        iov.push(headers.subarray(at, at + RECORD_HEADER_SIZE), payload);
        run.hashes.forEach((h, i) => pending.push({ kind: run.kind, block: run.block + i, offset: recordAt, crc: 0, hash: h }));
      }
      pos += RECORD_HEADER_SIZE + payloadLength;
      seq++;
    });
    if (options.direct === true && pos - this.#logEnd >= DIRECT_APPEND_BYTES && this.#logEnd % LOG_ALIGN === 0) {
      const pad = paddingAt(pos);
      if (await this.#writeDirect([...iov, ...(pad === 0 ? [] : encodePadRecord(pad, seq, this.#tag))], pos + pad - this.#logEnd)) {
        this.#tailBytes += pos + pad - this.#logEnd;
        this.#logEnd = pos + pad;
        this.#nextSeq = pad === 0 ? seq : seq + 1;
        this.#endExposed = false;
        return pending.map((p) => this.#addRow(p.kind, p.block, p.offset, p.crc, p.hash));
      }
    }
    await this.#handle.write(iov, this.#logEnd);
    this.#tailBytes += pos - this.#logEnd;
    this.#logEnd = pos;
    this.#nextSeq = seq;
    this.#endExposed = false;
    return pending.map((p) => this.#addRow(p.kind, p.block, p.offset, p.crc, p.hash));
  }

  /**
   * Writes `buffers` (`length` bytes, a multiple of LOG_ALIGN) at the log end through
   * the direct handle, from an aligned copy. False when direct writes are not to be
   * had (then nothing was written).
   */
  async #writeDirect(buffers: readonly Uint8Array[], length: number): Promise<boolean> {
    if (this.#direct === undefined) {
      const h = await this.#fs.open(this.path, 'readWrite', { direct: true }).catch(() => undefined);
      this.#direct = h?.direct === true ? h : null;
      if (h !== undefined && this.#direct === null) await h.close().catch(() => undefined);
    }
    if (this.#direct === null) return false;
    const staging = alignedPool.acquire(length);
    try {
      if (!isDirectAligned(staging)) return false;
      let at = 0;
      for (const b of buffers) {
        staging.set(b, at);
        at += b.length;
      }
      if (at !== length) throw new Error(`internal: direct append of ${at} bytes, expected ${length}`);
      if (await this.#handle.writeThrough(this.#direct, [staging], this.#logEnd)) return true;
      await this.#direct.close().catch(() => undefined);
      this.#direct = null;
      return false;
    } finally {
      alignedPool.release(staging);
    }
  }

  /**
   * Makes every appended record durable, the log padded to a LOG_ALIGN boundary;
   * indexes the tail when it has grown long (the segment is padded instead).
   */
  async sync(): Promise<void> {
    this.#assertWritable();
    const tailRows = this.records.count - this.#indexedRows;
    if (tailRows >= SEGMENT_EVERY_ROWS || this.#tailBytes >= SEGMENT_EVERY_BYTES) {
      await this.#handle.datasync();
      await this.#writeSegments();
      return;
    }
    await this.#pad();
    await this.#handle.datasync();
    this.#endExposed = true;
  }

  /** Appends a PAD record taking the log end to the next LOG_ALIGN boundary (not synced). */
  async #pad(): Promise<void> {
    const n = paddingAt(this.#logEnd);
    if (n === 0) return;
    await this.#handle.write(encodePadRecord(n, this.#nextSeq, this.#tag), this.#logEnd);
    this.#advance(n);
  }

  /** Moves the log end past `bytes` just written as one record holding no rows. */
  #advance(bytes: number): void {
    this.#logEnd += bytes;
    this.#nextSeq++;
    this.#tailBytes += bytes;
  }

  /**
   * Before writing at a log end that may hold acknowledged records in its last
   * sector (only after opening a log that does not end on a boundary), pads it to
   * the boundary durably, so a torn write cannot reach those records.
   */
  async #padExposedEnd(): Promise<void> {
    if (!this.#endExposed || this.#logEnd % LOG_ALIGN === 0) return;
    await this.#pad();
    await this.#handle.datasync();
  }

  /**
   * Appends one map segment listing the tail, makes it durable, then points a new
   * header at it. Precondition: the tail itself is durable. `append` keeps the tail
   * within one segment's capacity, so one segment always suffices.
   */
  async #writeSegments(patch: Partial<Pick<DeltaHeader, 'sealed' | 'snapshot' | 'parentId' | 'parentFile'>> = {}): Promise<void> {
    const from = this.#indexedRows;
    const total = this.records.count;
    if (total === from) {
      // Nothing to index: the header keeps its segment, log end and sequence number
      // (the tail may hold PAD records, which need no listing).
      await this.#writeHeader(patch);
      return;
    }
    await this.#padExposedEnd();
    const lastSegment = this.#header.lastSegment;
    const segAt = this.#logEnd;
    // Every row, in the order the segments so far list them, so the rows keep their
    // numbers (what the block map and the dedup index point at) after a reopen.
    const full = this.#segmentsToRead >= FULL_SEGMENT_AFTER && total <= MAX_SEGMENT_ENTRIES;
    const payload = encodeMapSegment({
      prev: lastSegment,
      full,
      first: full ? LOG_START : this.#header.logEnd,
      end: segAt,
      firstSeq: full || lastSegment === 0 ? 1 : this.#seqAfterSegment(lastSegment),
      ...this.records.columns(full ? 0 : from, total),
    });
    const hdr = Buffer.allocUnsafe(RECORD_HEADER_SIZE);
    encodeRecordHeader(hdr, 0, RecordKind.MAPSEG, this.#nextSeq, 0, 1, payload.length, crc32(payload), this.#tag);
    // A header that cannot be encoded (LIMIT_EXCEEDED) must fail before the segment
    // is written: a segment no header points at would hide its rows from the next one.
    const end = segAt + RECORD_HEADER_SIZE + payload.length;
    const seq = this.#nextSeq;
    encodeDeltaHeader({ ...this.#header, ...patch, generation: this.#header.generation + 1, logEnd: end, nextSeq: seq + 1, lastSegment: segAt });
    // The padding goes with the segment: the header about to point at it makes the
    // segment's last sector one that no later write may touch.
    const pad = paddingAt(end);
    await this.#handle.write([hdr, payload, ...(pad > 0 ? encodePadRecord(pad, seq + 1, this.#tag) : [])], segAt);
    await this.#handle.datasync();
    this.#segmentSeqs.set(segAt, seq);
    this.#segmentsToRead = full ? 1 : this.#segmentsToRead + 1;
    this.#nextSeq = seq + 1;
    this.#logEnd = end;
    this.#indexedRows = total;
    this.#tailBytes = 0;
    if (pad > 0) this.#advance(pad);
    this.#endExposed = true;
    // The header's log end is the segment's end; the PAD after it is scanned as tail.
    await this.#writeHeader({ ...patch, logEnd: end, nextSeq: seq + 1, lastSegment: segAt });
  }

  async #writeHeader(patch: Partial<DeltaHeader>): Promise<void> {
    const next: DeltaHeader = { ...this.#header, ...patch, generation: this.#header.generation + 1 };
    const slot: 0 | 1 = this.#slot === 0 ? 1 : 0;
    await this.#handle.write([encodeDeltaHeader(next)], slot * HEADER_SLOT_SIZE);
    await this.#handle.datasync();
    this.#header = next;
    this.#slot = slot;
  }

  /**
   * Durably records header fields (sealed, snapshot tag, parent). Indexes the tail
   * first, so the header's log end always follows its newest segment.
   */
  async updateHeader(patch: Partial<Pick<DeltaHeader, 'sealed' | 'snapshot' | 'parentId' | 'parentFile'>>): Promise<void> {
    this.#assertWritable();
    await this.#handle.datasync();
    await this.#writeSegments(patch);
  }

  /** Seals the layer (it becomes a snapshot or a shared layer). */
  async seal(snapshot: SnapshotTag | null): Promise<void> {
    await this.updateHeader({ sealed: true, snapshot });
  }

  /** @throws CHAIN_CORRUPT unless the layer holds at least `rows` rows (a bookmark's count). */
  assertRows(rows: number): void {
    if (!Number.isSafeInteger(rows) || rows < 0 || rows > this.records.count) {
      this.#corrupt(`a bookmark names ${rows} rows, but the layer holds ${this.records.count}`);
    }
  }

  /**
   * The block map as it was when the layer held its first `rows` rows (a bookmark's
   * view of it), and how many of its blocks map DATA rows. Rows keep their numbers
   * for the life of the file, so the map is rebuilt from the rows alone.
   * @throws CHAIN_CORRUPT when the layer holds fewer rows
   */
  mapAt(rows: number): { map: BlockTable; dataBlocks: number } {
    this.assertRows(rows);
    if (rows === this.records.count) return { map: this.map, dataBlocks: this.#dataBlocks };
    // The map as it is now, with each block written since put back to its newest
    // row before: for a bookmark of a backup, a few rows after many.
    const t = this.records;
    const pending = new Set<number>();
    for (let r = rows; r < t.count; r++) if (t.kind(r) !== RecordKind.BLOB) pending.add(t.block(r));
    const map = this.map.clone();
    let dataBlocks = this.#dataBlocks;
    for (const b of pending) {
      if (map.tag(b) === RecordKind.DATA) dataBlocks--;
      map.delete(b);
    }
    for (let r = rows - 1; r >= 0 && pending.size > 0; r--) {
      const kind = t.kind(r);
      if (kind === RecordKind.BLOB || !pending.delete(t.block(r))) continue;
      map.set(t.block(r), kind, r);
      if (kind === RecordKind.DATA) dataBlocks++;
    }
    return { map, dataBlocks };
  }

  // ---------------------------------------------------------------- reading

  /** Reads the data of DATA/BLOB row `row` (a whole block), verified. */
  async readRow(row: number): Promise<Buffer> {
    const data = await readExactly(this.#handle, this.records.offset(row), this.blockSize);
    this.verifyRow(row, data);
    return data;
  }

  /**
   * Checks `data`, read for DATA/BLOB row `row`, against the block CRC on record.
   * @throws CHECKSUM_MISMATCH naming the file, offset and block.
   */
  verifyRow(row: number, data: Uint8Array): void {
    if (crc32(data) === this.records.crc(row)) return;
    const offset = this.records.offset(row);
    const block = this.records.kind(row) === RecordKind.BLOB ? undefined : this.records.block(row);
    throw new DeltaDiskError('CHECKSUM_MISMATCH', `${this.path}: ${block === undefined ? 'stored content' : `block ${block}`} at offset ${offset} fails its checksum`, {
      path: this.path,
      offset,
      block,
      layer: this.id,
    });
  }

  #corrupt(message: string, offset?: number): never {
    throw new DeltaDiskError('CHAIN_CORRUPT', `${this.path}: ${message}`, { path: this.path, offset, layer: this.id });
  }
}

async function readNewestHeader(handle: FileHandle, p: string): Promise<{ header: DeltaHeader; slot: 0 | 1 }> {
  const both = await readUpTo(handle, 0, 2 * HEADER_SLOT_SIZE);
  if (both.length < HEADER_SLOT_SIZE) {
    throw new DeltaDiskError('TRUNCATED', `${p} is too short to be a delta (${both.length} bytes)`, { path: p });
  }
  const a = decodeDeltaHeader(both.subarray(0, HEADER_SLOT_SIZE), p);
  const b = both.length >= 2 * HEADER_SLOT_SIZE ? decodeDeltaHeader(both.subarray(HEADER_SLOT_SIZE), p) : undefined;
  if (a === undefined && b === undefined) {
    throw new DeltaDiskError('CHAIN_CORRUPT', `${p} has no intact delta header`, { path: p });
  }
  if (a !== undefined && b !== undefined) {
    if (a.layerId !== b.layerId || a.diskId !== b.diskId) {
      throw new DeltaDiskError('CHAIN_CORRUPT', `${p} has header slots of two different layers`, { path: p });
    }
    return b.generation > a.generation ? { header: b, slot: 1 } : { header: a, slot: 0 };
  }
  return a !== undefined ? { header: a, slot: 0 } : { header: b!, slot: 1 };
}
