/**
 * The index cache file: a repository's loaded chunk index, as columns, kept on the
 * machine that loaded it (never in the repository) so the next backup skips
 * decoding every index file and linking every entry (borg's chunks cache).
 *
 *     offset 0     8 bytes  magic `DDXC\r\n\x1a\n`
 *     offset 8     u16      layout version (1)
 *     offset 10    u16      flags (0)
 *     offset 12    u32      header length h
 *     offset 16    h bytes  header (msgpack):
 *                             { repo: str, avoid: bin 32,
 *                               files: [ [ name: bin 32, size: int ] … ],   index files it covers
 *                               vouched: bin (16 × k),                  backups it vouches for (optional)
 *                               packs: bin (32 × packs: names), sizes: [int], counts: [int],
 *                               packFlags: bin, entries: n, slots: t }
 *     offset 16+h  columns, back to back: hash (32 n), pack, offset, stored, raw
 *                  (u32 × n each), meta (n), preferred (n), table (i32 × t); host order
 *     then         SHA-256 of everything before it
 *
 * The columns are raw rather than msgpack so that storing and loading a 16k-entry
 * index costs a copy and a hash, not an encoder's growth and copies. `avoid` is a
 * digest of the packs a prune plan condemns and a check marked bad: entry preference
 * depends on them, so a cache built under other marks is not used. The columns are
 * those of ChunkIndexColumns; ChunkIndex.fromColumns checks that they fit together.
 * `vouched` lists the backups (at most MAX_VOUCHED, latest first) whose every chunk
 * this index held, usable, when it was stored: backups made from this machine that
 * stored it (index-cache.ts says when that still holds).
 */
import { createHash } from 'node:crypto';
import { decode, encode } from '@msgpack/msgpack';
import { DeltaDiskError } from '../errors.js';
import { Fields } from './framed.js';
import { HASH_SIZE, MAX_INDEX_PACKS } from './repo-limits.js';

export const INDEX_CACHE_MAGIC = Buffer.from('DDXC\r\n\x1a\n', 'latin1');
const CACHE_LAYOUT = 1;

/** An index file a cache was built from. */
export interface CachedIndexFile {
  readonly name: string;
  readonly size: number;
}

/**
 * A chunk index as plain columns (ChunkIndex.columns / fromColumns): the packs, then
 * per entry its hash (32 bytes each), pack, offset, lengths, kind | compression << 4
 * and whether it is the preferred copy, then the open-addressing table (0 empty, else
 * entry id + 1; a power of two long).
 */
export interface ChunkIndexColumns {
  readonly packNames: readonly string[];
  readonly packSizes: readonly number[];
  readonly packCounts: readonly number[];
  readonly packFlags: Uint8Array;
  readonly hash: Uint8Array;
  readonly pack: Uint32Array;
  readonly offset: Uint32Array;
  readonly stored: Uint32Array;
  readonly raw: Uint32Array;
  readonly meta: Uint8Array;
  readonly preferred: Uint8Array;
  readonly table: Int32Array;
}

/** Backups an index cache vouches for, at most. */
export const MAX_VOUCHED = 16;
const BACKUP_ID_BYTES = 16;

export interface IndexCacheContent {
  readonly repo: string;
  /** Digest of the condemned and bad pack names the preferences were computed under. */
  readonly avoid: Buffer;
  readonly files: readonly CachedIndexFile[];
  /** Ids of the backups whose every chunk the index held, usable, when it was stored (latest first). */
  readonly vouched: readonly string[];
  readonly columns: ChunkIndexColumns;
}

const bytesOf = (a: ArrayBufferView): Buffer => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

/** Typed-array columns are stored in host order: the cache is only used on little-endian hosts. */
export const CACHE_USABLE = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

const HEAD = 16;
const TRAILER = 32;
/** Bytes per entry of the entry columns. */
const ENTRY_BYTES = HASH_SIZE + 4 * 4 + 2;

/** The cache file as one buffer (see indexCacheParts). */
export function encodeIndexCache(c: IndexCacheContent): Buffer {
  return Buffer.concat(indexCacheParts(c));
}

/**
 * The cache file as the pieces it is written from: its head and header, views of
 * the columns (not copied: a cache of 50k chunks is 3 MB of fresh memory, a few ms
 * here), and the SHA-256 of them all as they are now. If a column changes before
 * the pieces are written, the file fails its checksum and is a miss.
 */
export function indexCacheParts(c: IndexCacheContent): Uint8Array[] {
  const k = c.columns;
  const n = k.pack.length;
  const fields = {
    repo: c.repo,
    avoid: c.avoid,
    files: c.files.map((f) => [Buffer.from(f.name, 'hex'), f.size]),
    vouched: Buffer.concat(c.vouched.slice(0, MAX_VOUCHED).map((id) => Buffer.from(id, 'hex'))),
    packs: Buffer.concat(k.packNames.map((name) => Buffer.from(name, 'hex'))),
    sizes: k.packSizes,
    counts: k.packCounts,
    packFlags: bytesOf(k.packFlags),
    entries: n,
    slots: k.table.length,
  };
  // Padded so that the columns start on a 4-byte boundary: a reader then takes the
  // word columns in place (decodeIndexCache) instead of copying them.
  let header = encode(fields);
  for (let pad = 0; (HEAD + header.length) % 4 !== 0 && pad < 4; pad++) header = encode({ ...fields, pad: new Uint8Array(pad) });
  const columns = [k.hash, k.pack, k.offset, k.stored, k.raw, k.meta, k.preferred, k.table].map(bytesOf);
  const head = Buffer.allocUnsafe(HEAD + header.length);
  INDEX_CACHE_MAGIC.copy(head, 0);
  head.writeUInt16LE(CACHE_LAYOUT, 8);
  head.writeUInt16LE(0, 10);
  head.writeUInt32LE(header.length, 12);
  head.set(header, HEAD);
  const columnBytes = columns.reduce((sum, col) => sum + col.length, 0);
  if (columnBytes !== n * ENTRY_BYTES + k.table.length * 4) throw new DeltaDiskError('INVALID_ARGUMENT', 'index cache: columns do not match the entry count');
  const digest = createHash('sha256').update(head);
  for (const col of columns) digest.update(col);
  return [head, ...columns, digest.digest()];
}

/**
 * Decodes a cache file of at most `maxBytes` (the caller bounds it by what the index
 * files could hold). Only the frame and the shapes are checked here.
 * @throws REPO_CORRUPT, UNSUPPORTED_VERSION, LIMIT_EXCEEDED
 */
export function decodeIndexCache(bytes: Uint8Array, maxBytes: number, path?: string): IndexCacheContent {
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const fail = (what: string): never => {
    throw new DeltaDiskError('REPO_CORRUPT', `index cache: ${what}`, { path });
  };
  if (b.length > maxBytes) throw new DeltaDiskError('LIMIT_EXCEEDED', `index cache is ${b.length} bytes, at most ${maxBytes} allowed`, { path });
  if (b.length < HEAD + TRAILER || !b.subarray(0, 8).equals(INDEX_CACHE_MAGIC)) fail('bad magic or too short');
  if (b.readUInt16LE(8) !== CACHE_LAYOUT || b.readUInt16LE(10) !== 0) throw new DeltaDiskError('UNSUPPORTED_VERSION', 'index cache: unknown layout', { path });
  const body = b.length - TRAILER;
  if (!createHash('sha256').update(b.subarray(0, body)).digest().equals(b.subarray(body))) fail('checksum mismatch (damaged)');
  const h = b.readUInt32LE(12);
  if (HEAD + h > body) fail('header runs past the end');
  let v: unknown;
  try {
    v = decode(b.subarray(HEAD, HEAD + h), { maxStrLength: 64, maxBinLength: h, maxArrayLength: Math.max(MAX_INDEX_PACKS, h), maxMapLength: 16, maxExtLength: 0 });
  } catch (err) {
    throw new DeltaDiskError('REPO_CORRUPT', 'index cache: header is not valid msgpack', { path, cause: err });
  }
  const f = new Fields(v, 'index cache', path);
  const files = f.array('files', h).map((x) => {
    const [name, size] = Array.isArray(x) && x.length === 2 ? (x as unknown[]) : [];
    if (!(name instanceof Uint8Array) || name.length !== HASH_SIZE || typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) f.fail('a file entry is malformed');
    return { name: Buffer.from(name as Uint8Array).toString('hex'), size: size as number };
  });
  // Absent from caches stored before it existed: they vouch for nothing.
  const vouchedBytes = f.has('vouched') ? f.bin('vouched', undefined, MAX_VOUCHED * BACKUP_ID_BYTES) : Buffer.alloc(0);
  if (vouchedBytes.length % BACKUP_ID_BYTES !== 0) f.fail('vouched backups are not whole ids');
  const vouched: string[] = [];
  for (let at = 0; at < vouchedBytes.length; at += BACKUP_ID_BYTES) vouched.push(vouchedBytes.toString('hex', at, at + BACKUP_ID_BYTES));
  const packBytes = f.bin('packs');
  if (packBytes.length % HASH_SIZE !== 0) f.fail('pack names are not whole hashes');
  const packNames: string[] = [];
  for (let at = 0; at < packBytes.length; at += HASH_SIZE) packNames.push(packBytes.toString('hex', at, at + HASH_SIZE));
  const ints = (key: string): number[] => f.array(key, packNames.length).map((x) => (typeof x === 'number' && Number.isSafeInteger(x) && x >= 0 ? x : f.fail(`${key} holds a non-count`)));
  const n = f.int('entries');
  const t = f.int('slots');
  if (HEAD + h + n * ENTRY_BYTES + t * 4 !== body) fail('the columns do not fill the file');
  // The columns are views of `bytes` (word columns where they lie 4-aligned there,
  // else copies): ChunkIndex.fromColumns copies them once, into arrays with room to
  // grow. Copying them here as well cost each backup a few ms of fresh memory (page
  // faults, ~1 ms per MB here) for a repository of 50k chunks.
  let at = HEAD + h;
  const take = (len: number): Buffer => b.subarray(at, (at += len));
  /** The next `len` bytes where a word view may start: in place when 4-aligned, else copied. */
  const aligned = (len: number): { buffer: ArrayBufferLike; offset: number } => {
    const from = b.byteOffset + at;
    const src = take(len);
    if (from % 4 === 0) return { buffer: b.buffer, offset: from };
    const copy = new Uint8Array(len);
    copy.set(src);
    return { buffer: copy.buffer, offset: 0 };
  };
  const u32 = (): Uint32Array => {
    const w = aligned(n * 4);
    return new Uint32Array(w.buffer, w.offset, n);
  };
  const hash = take(n * HASH_SIZE);
  const pack = u32();
  const offset = u32();
  const stored = u32();
  const raw = u32();
  const meta = take(n);
  const preferred = take(n);
  const slots = aligned(t * 4);
  const table = new Int32Array(slots.buffer, slots.offset, t);
  return {
    repo: f.str('repo', 64),
    avoid: Buffer.from(f.bin('avoid', HASH_SIZE)),
    files,
    vouched,
    columns: { packNames, packSizes: ints('sizes'), packCounts: ints('counts'), packFlags: Uint8Array.from(f.bin('packFlags')), hash, pack, offset, stored, raw, meta, preferred, table },
  };
}
