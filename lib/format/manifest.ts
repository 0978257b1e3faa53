/**
 * Backup manifests: what one backup holds.
 *
 * A manifest is a frame (framed.ts, magic `DDSN\r\n\x1a\n`) stored as
 * `snapshots/<id>`, where `id` is 32 random hex digits chosen when the backup starts
 * (so a disk's anchor snapshot can be named after it). The payload is a msgpack map:
 *
 *     id, time, end, host, user, tags, paths, entries, summary, vm?
 *
 * `vm` is present in backups of a VM directory (vm-record.ts).
 * Each entry is one file system object, in depth-first order, parents first:
 *
 *     { path, type, mode, mtime, size?, content?, target?, chain? }
 *
 * `path` is relative, `/`-separated; `type` is file, dir, symlink, chain, or one of
 * the special types (fifo, chardev, blockdev, socket) that are described but never
 * restored. The bytes of a file (or of a point in time of a disk) are a *content*:
 *
 *     { count, size, chunk, hashes? | lists? }
 *
 * `chunk` is the fixed chunk size, or 0 for content-defined chunks. Up to 64 chunk
 * hashes are stored inline (`hashes`, count × 32 bytes); longer lists are stored as
 * list blobs in packs (up to 16384 hashes each) named in `lists`. In fixed-size
 * content the all-zero hash stands for a chunk of zeros, which is never stored.
 *
 * All points in time of one disk share one chunk size (and so one chunk count).
 *
 * Decoding bounds every string, list and number and checks the shapes. It does not
 * judge whether paths are safe to restore: that is restore's job (restore-plan.ts),
 * which must see hostile names to refuse them.
 */
import { DeltaDiskError } from '../errors.js';
import { decodeFramed, encodeFramed, Fields, HEX32 } from './framed.js';
import { MAX_VIRTUAL_SIZE } from './limits.js';
import {
  HASH_SIZE,
  INLINE_HASHES,
  LIST_BLOB_HASHES,
  MAX_BLOB_SIZE,
  MAX_CHUNKS,
  MAX_ENTRIES,
  MAX_LISTS,
  MAX_MANIFEST_BYTES,
  MAX_PATH_BYTES,
  MAX_POINTS,
  MAX_TAGS,
  MAX_TAG_LENGTH,
  MAX_TEXT,
  MIN_FIXED_CHUNK,
} from './repo-limits.js';
import { decodeVmRecord, encodeVmRecord, MAX_HOOK_OUTPUT, type VmRecord } from './vm-record.js';

export const MANIFEST_MAGIC = Buffer.from('DDSN\r\n\x1a\n', 'latin1');

export interface Content {
  /** Number of chunks. */
  readonly count: number;
  /** Bytes of content. */
  readonly size: number;
  /** Fixed chunk size, or 0 for content-defined chunks. */
  readonly chunkSize: number;
  /** Inline chunk hashes (count × 32 bytes), when count ≤ 64. */
  readonly hashes?: Buffer;
  /** Hashes of the list blobs holding the chunk hashes, otherwise. */
  readonly lists?: readonly Buffer[];
}

export const SPECIAL_TYPES = ['fifo', 'chardev', 'blockdev', 'socket'] as const;
export type SpecialType = (typeof SPECIAL_TYPES)[number];
export type EntryType = 'file' | 'dir' | 'symlink' | 'chain' | SpecialType;

interface EntryBase {
  readonly path: string;
  /** Permission bits (including setuid/setgid/sticky as found; restore drops those three). */
  readonly mode: number;
  /** Modification time, milliseconds since the epoch (fractional). */
  readonly mtimeMs: number;
}

export interface FileEntry extends EntryBase {
  readonly type: 'file';
  readonly size: number;
  readonly content: Content;
}
export interface DirEntry extends EntryBase {
  readonly type: 'dir';
}
export interface SymlinkEntry extends EntryBase {
  readonly type: 'symlink';
  readonly target: string;
}
export interface SpecialEntry extends EntryBase {
  readonly type: SpecialType;
}

/** One point in time of a disk: a snapshot of it, or the state captured by the backup. */
export interface ChainPoint {
  /** Snapshot id in the source disk. */
  readonly id: string;
  readonly name: string;
  readonly description: string;
  /** ISO time the snapshot was taken. */
  readonly created: string;
  /** Id of the nearest backed-up point this one descends from, or null. */
  readonly parent: string | null;
  readonly content: Content;
}

export interface ChainInfo {
  readonly diskId: string;
  readonly virtualSize: number;
  readonly blockSize: number;
  readonly dedup: boolean;
  /** The backup whose capture served as the base of change detection, or null (full read). */
  readonly base: string | null;
  /** The state at capture time: the anchor snapshot `deltadisk-backup-<id>`. */
  readonly capture: ChainPoint;
  /** The disk's own snapshots selected for the backup, oldest first. */
  readonly points: readonly ChainPoint[];
}

export interface ChainEntry extends EntryBase {
  readonly type: 'chain';
  readonly chain: ChainInfo;
}

export type Entry = FileEntry | DirEntry | SymlinkEntry | ChainEntry | SpecialEntry;

export interface Manifest {
  readonly id: string;
  /** ISO time the backup started (the capture point). */
  readonly time: string;
  readonly end: string;
  readonly host: string;
  readonly user: string;
  readonly tags: readonly string[];
  /** The source paths as given (absolute). */
  readonly paths: readonly string[];
  readonly entries: readonly Entry[];
  /** Counters (files, bytes read, bytes added …), for `snapshots` and `stats`. */
  readonly summary: Readonly<Record<string, number>>;
  /** Present in backups made by `vm backup`: how the VM was captured (vm-record.ts). */
  readonly vm?: VmRecord;
}

function encodeContent(c: Content): Record<string, unknown> {
  return { count: c.count, size: c.size, chunk: c.chunkSize, hashes: c.hashes, lists: c.lists };
}

function encodePoint(p: ChainPoint): Record<string, unknown> {
  return { id: p.id, name: p.name, description: p.description, created: p.created, parent: p.parent, content: encodeContent(p.content) };
}

function encodeEntry(e: Entry): Record<string, unknown> {
  const base = { path: e.path, type: e.type, mode: e.mode, mtime: e.mtimeMs };
  switch (e.type) {
    case 'file':
      return { ...base, size: e.size, content: encodeContent(e.content) };
    case 'symlink':
      return { ...base, target: e.target };
    case 'chain': {
      const c = e.chain;
      return {
        ...base,
        chain: {
          diskId: c.diskId,
          virtualSize: c.virtualSize,
          blockSize: c.blockSize,
          dedup: c.dedup,
          base: c.base,
          capture: encodePoint(c.capture),
          points: c.points.map(encodePoint),
        },
      };
    }
    default:
      return base;
  }
}

export function encodeManifest(m: Manifest): Buffer {
  if (m.entries.length > MAX_ENTRIES) {
    throw new DeltaDiskError('LIMIT_EXCEEDED', `a backup holds at most ${MAX_ENTRIES} entries; split the backup`);
  }
  const out = encodeFramed(MANIFEST_MAGIC, {
    id: m.id,
    time: m.time,
    end: m.end,
    host: m.host,
    user: m.user,
    tags: m.tags,
    paths: m.paths,
    entries: m.entries.map(encodeEntry),
    summary: m.summary,
    ...(m.vm === undefined ? {} : { vm: encodeVmRecord(m.vm) }),
  });
  if (out.length > MAX_MANIFEST_BYTES) {
    throw new DeltaDiskError('LIMIT_EXCEEDED', `manifest of ${out.length} bytes exceeds ${MAX_MANIFEST_BYTES}; split the backup`);
  }
  return out;
}

function decodeContent(f: Fields): Content {
  const count = f.int('count', 0, MAX_CHUNKS);
  const size = f.int('size', 0, MAX_VIRTUAL_SIZE);
  const chunkSize = f.int('chunk', 0, MAX_BLOB_SIZE);
  if (chunkSize !== 0 && chunkSize < MIN_FIXED_CHUNK) f.fail(`chunk size ${chunkSize} is below ${MIN_FIXED_CHUNK}`);
  if (chunkSize > 0 ? count !== Math.ceil(size / chunkSize) : count > size || count * MAX_BLOB_SIZE < size) {
    f.fail(`${count} chunks cannot hold ${size} bytes`);
  }
  if (f.has('hashes') === f.has('lists') && count > 0) f.fail('content needs exactly one of hashes and lists');
  if (f.has('lists')) {
    const raw = f.array('lists', MAX_LISTS);
    if (raw.length !== Math.ceil(count / LIST_BLOB_HASHES) || count <= INLINE_HASHES) f.fail('list blob count does not fit the chunk count');
    const lists = raw.map((h) => {
      if (!(h instanceof Uint8Array) || h.length !== HASH_SIZE) f.fail('a list blob hash is not 32 bytes');
      return Buffer.from(h);
    });
    return { count, size, chunkSize, lists };
  }
  const hashes = count === 0 && !f.has('hashes') ? Buffer.alloc(0) : Buffer.from(f.bin('hashes'));
  if (hashes.length !== count * HASH_SIZE || count > INLINE_HASHES) f.fail('inline hashes do not fit the chunk count');
  return { count, size, chunkSize, hashes };
}

function decodePoint(f: Fields, path?: string): ChainPoint {
  const created = f.str('created', 64);
  return {
    id: f.str('id', 64, 1),
    name: f.str('name', 255, 1),
    description: f.str('description', MAX_TEXT),
    created,
    parent: f.optStr('parent', 64),
    content: decodeContent(new Fields(f.raw('content'), 'manifest chain point content', path)),
  };
}

function decodeChain(f: Fields, path?: string): ChainInfo {
  const virtualSize = f.int('virtualSize', 1, MAX_VIRTUAL_SIZE);
  const blockSize = f.int('blockSize', 4096, 1024 * 1024);
  const capture = decodePoint(f.fields('capture'), path);
  const points = f.array('points', MAX_POINTS - 1).map((p) => decodePoint(new Fields(p, 'manifest chain point', path), path));
  for (const p of [capture, ...points]) {
    if (p.content.size !== virtualSize || p.content.chunkSize === 0 || p.content.chunkSize % blockSize !== 0) {
      f.fail(`point ${p.name} does not cover the disk in block-aligned chunks`);
    }
    // Restore writes each point as its difference from its parent, chunk i against
    // chunk i (chain-restore.ts): that only means something when both are cut alike.
    if (p.content.chunkSize !== capture.content.chunkSize) {
      f.fail(`point ${p.name} is cut in ${p.content.chunkSize}-byte chunks, the disk's other points in ${capture.content.chunkSize}-byte ones`);
    }
  }
  const ids = new Set(points.map((p) => p.id));
  if (ids.size !== points.length || ids.has(capture.id)) f.fail('chain points are not unique');
  for (const p of [capture, ...points]) if (p.parent !== null && !ids.has(p.parent)) f.fail(`point ${p.name} names a parent that is not in the backup`);
  const parentOf = new Map(points.map((p) => [p.id, p.parent]));
  for (const p of points) {
    let at: string | null = p.parent;
    for (let steps = 0; at !== null; steps++) {
      if (steps > points.length || at === p.id) f.fail(`point ${p.name} is its own ancestor`);
      at = parentOf.get(at) ?? null;
    }
  }
  return { diskId: f.str('diskId', 64, 1), virtualSize, blockSize, dedup: f.bool('dedup'), base: f.optStr('base', 32), capture, points };
}

const TYPES = new Set<string>(['file', 'dir', 'symlink', 'chain', ...SPECIAL_TYPES]);

function decodeEntry(v: unknown, path?: string): Entry {
  const f: Fields = new Fields(v, 'manifest entry', path);
  const p = f.str('path', MAX_PATH_BYTES, 1);
  const type = f.str('type', 16);
  if (!TYPES.has(type)) f.fail(`entry ${JSON.stringify(p)} has unknown type ${JSON.stringify(type)}`);
  const base = { path: p, mode: f.int('mode', 0, 0o7777), mtimeMs: f.num('mtime') };
  switch (type) {
    case 'file': {
      const content = decodeContent(f.fields('content'));
      const size = f.int('size', 0, MAX_VIRTUAL_SIZE);
      if (size !== content.size) f.fail(`file ${JSON.stringify(p)} size ${size} differs from its content's ${content.size}`);
      return { ...base, type, size, content };
    }
    case 'symlink':
      return { ...base, type, target: f.str('target', MAX_PATH_BYTES, 1) };
    case 'chain':
      return { ...base, type, chain: decodeChain(f.fields('chain'), path) };
    default:
      return { ...base, type: type as 'dir' | SpecialType };
  }
}

/**
 * Decodes and validates a manifest.
 * @param id when given, the manifest's file name, which must match its `id`.
 * @throws REPO_CORRUPT, UNSUPPORTED_VERSION, LIMIT_EXCEEDED
 */
export function decodeManifest(bytes: Uint8Array, id?: string, path?: string): Manifest {
  const v = decodeFramed(bytes, MANIFEST_MAGIC, 'manifest', MAX_MANIFEST_BYTES, {
    maxStrLength: Math.max(4 * MAX_TEXT, 4 * MAX_HOOK_OUTPUT),
    maxBinLength: INLINE_HASHES * HASH_SIZE,
    maxArrayLength: Math.max(MAX_ENTRIES, MAX_LISTS),
    maxMapLength: 64,
  }, path);
  const f: Fields = new Fields(v, 'manifest', path);
  const mid = f.str('id', 32);
  if (!HEX32.test(mid) || (id !== undefined && id !== mid)) f.fail(`id ${JSON.stringify(mid)} does not match the file name`);
  const summary: Record<string, number> = {};
  const s = f.raw('summary');
  if (typeof s !== 'object' || s === null || Array.isArray(s)) f.fail('summary is not a map');
  for (const [k, n] of Object.entries(s as Record<string, unknown>)) {
    if (typeof n === 'number' && Number.isFinite(n) && k.length <= 64) summary[k] = n;
  }
  return {
    id: mid,
    time: f.str('time', 64, 1),
    end: f.str('end', 64, 1),
    host: f.str('host', 255),
    user: f.str('user', 255),
    tags: f.strings('tags', MAX_TAGS, MAX_TAG_LENGTH),
    paths: f.strings('paths', MAX_ENTRIES, MAX_PATH_BYTES),
    entries: f.array('entries', MAX_ENTRIES).map((e) => decodeEntry(e, path)),
    summary,
    ...(f.has('vm') ? { vm: decodeVmRecord(f.fields('vm'), (v, what) => new Fields(v, what, path)) } : {}),
  };
}
