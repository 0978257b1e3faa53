/**
 * Encode, decode and validate the chain descriptor (`<name>.chain`, format versions 1
 * and 2: version 2 is version 1 plus bookmarks, and is written only while the disk
 * holds a bookmark, so a disk without one stays readable by builds that know only 1).
 *
 * The descriptor is the commit point of every change to a disk's shape: a snapshot,
 * revert, delete or merge is durable exactly when the new descriptor has replaced
 * the old one (atomic replace). It is human-readable JSON with a CRC-32 over its
 * canonical form, so a hand edit or a damaged copy is detected rather than trusted.
 *
 * Decoding checks everything a later step relies on: sizes within limits, file
 * names that are plain names, ids unique, every parent present, no cycle, no path
 * deeper than MAX_DEPTH, the active layer a leaf, snapshot names unique.
 */
import { crc32 } from 'node:zlib';
import { DeltaDiskError } from '../errors.js';
import {
  MAX_BASE_PATH,
  MAX_DEPTH,
  MAX_DESCRIPTION_LENGTH,
  MAX_LAYERS,
  MAX_NAME_LENGTH,
  MAX_SNAPSHOTS,
  MAX_VIRTUAL_SIZE,
  isValidBlockSize,
} from './limits.js';

export const DESCRIPTOR_FORMAT = 'deltadisk-chain';
/** The newest descriptor version this build reads and writes. */
export const DESCRIPTOR_VERSION = 2;

export interface BaseRef {
  /** Path of the raw base image, relative to the descriptor's directory (or absolute). */
  readonly file: string;
  readonly size: number;
  /** SHA-256 over the size and sampled ranges: detects a base modified behind our back. */
  readonly fingerprint: string;
}

export interface LayerEntry {
  readonly id: string;
  /** File name of the delta, in the descriptor's directory. */
  readonly file: string;
  readonly parent: string | null;
  readonly created: string;
}

export interface SnapshotEntry {
  readonly id: string;
  readonly name: string;
  readonly description: string;
  readonly created: string;
  /** The sealed layer holding this point in time; for a bookmark, the layer holding its rows. */
  readonly layer: string;
  /**
   * Present for a bookmark only: the point in time is the layer's first `rows` rows
   * (its records in log order) over its ancestors. A bookmark costs one descriptor
   * replacement to take or delete, seals nothing and may sit on the active layer;
   * it can be read, compared and deleted, not reverted to.
   */
  readonly rows?: number;
}

export function isBookmark(s: SnapshotEntry): boolean {
  return s.rows !== undefined;
}

export interface Descriptor {
  readonly diskId: string;
  readonly generation: number;
  readonly virtualSize: number;
  readonly blockSize: number;
  /** Store a block identical to one already stored as a reference (inline dedup). */
  readonly dedup: boolean;
  /** null: a sparse base that reads as zeros. */
  readonly base: BaseRef | null;
  /** Number for the next delta file name; files numbered at or above it are uncommitted. */
  readonly nextLayer: number;
  readonly active: string;
  readonly layers: readonly LayerEntry[];
  readonly snapshots: readonly SnapshotEntry[];
}

function canonical(d: Descriptor): string {
  return JSON.stringify({
    format: DESCRIPTOR_FORMAT,
    version: d.snapshots.some(isBookmark) ? 2 : 1,
    diskId: d.diskId,
    generation: d.generation,
    virtualSize: d.virtualSize,
    blockSize: d.blockSize,
    dedup: d.dedup,
    base: d.base === null ? null : { file: d.base.file, size: d.base.size, fingerprint: d.base.fingerprint },
    nextLayer: d.nextLayer,
    active: d.active,
    layers: d.layers.map((l) => ({ id: l.id, file: l.file, parent: l.parent, created: l.created })),
    snapshots: d.snapshots.map((s) => ({
      id: s.id,
      name: s.name,
      description: s.description,
      created: s.created,
      layer: s.layer,
      ...(s.rows === undefined ? {} : { rows: s.rows }),
    })),
  });
}

function checksumOf(d: Descriptor): string {
  return crc32(Buffer.from(canonical(d))).toString(16).padStart(8, '0');
}

export function encodeDescriptor(d: Descriptor): Buffer {
  const obj = JSON.parse(canonical(d)) as Record<string, unknown>;
  obj.checksum = checksumOf(d);
  return Buffer.from(`${JSON.stringify(obj, null, 2)}\n`);
}

function corrupt(message: string, path?: string): never {
  throw new DeltaDiskError('CHAIN_CORRUPT', `descriptor: ${message}`, { path });
}

const ID = /^[0-9a-f-]{8,64}$/;

function isId(v: unknown): v is string {
  return typeof v === 'string' && ID.test(v);
}

function isSafe(v: unknown, min: number, max: number): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= min && v <= max;
}

function isText(v: unknown, max: number): v is string {
  return typeof v === 'string' && v.length <= max;
}

/** A snapshot name: 1 to 255 characters, no control characters, not only spaces. */
export function isValidSnapshotName(name: unknown): name is string {
  return (
    typeof name === 'string' &&
    name.length > 0 &&
    name.length <= MAX_NAME_LENGTH &&
    name.trim().length > 0 &&
    // eslint-disable-next-line no-control-regex
    !/[\x00-\x1f\x7f]/.test(name)
  );
}

function isPlainFileName(v: unknown): v is string {
  return (
    typeof v === 'string' &&
    v.length > 0 &&
    v.length <= MAX_NAME_LENGTH &&
    v !== '.' &&
    v !== '..' &&
    // eslint-disable-next-line no-control-regex
    !/[/\\\x00-\x1f\x7f]/.test(v)
  );
}

/**
 * Parses and validates descriptor text.
 * @throws CHAIN_CORRUPT, UNSUPPORTED_VERSION, LIMIT_EXCEEDED
 */
export function decodeDescriptor(text: string, path?: string): Descriptor {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    corrupt('not valid JSON', path);
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) corrupt('not a JSON object', path);
  const o = raw as Record<string, unknown>;
  if (o.format !== DESCRIPTOR_FORMAT) corrupt(`format is ${JSON.stringify(o.format)}, expected "${DESCRIPTOR_FORMAT}"`, path);
  if (o.version !== 1 && o.version !== DESCRIPTOR_VERSION) {
    throw new DeltaDiskError('UNSUPPORTED_VERSION', `descriptor version ${String(o.version)} is not supported (this build reads versions 1 to ${DESCRIPTOR_VERSION})`, { path });
  }
  if (!isId(o.diskId)) corrupt('diskId is invalid', path);
  if (!isSafe(o.generation, 1, Number.MAX_SAFE_INTEGER)) corrupt('generation is invalid', path);
  if (!isSafe(o.virtualSize, 1, MAX_VIRTUAL_SIZE)) corrupt(`virtualSize ${String(o.virtualSize)} is invalid`, path);
  if (!isSafe(o.blockSize, 1, 2 ** 30) || !isValidBlockSize(o.blockSize)) corrupt(`blockSize ${String(o.blockSize)} is invalid`, path);
  if (typeof o.dedup !== 'boolean') corrupt('dedup is invalid', path);
  let base: BaseRef | null = null;
  if (o.base !== null) {
    const b = o.base as Record<string, unknown> | undefined;
    if (typeof b !== 'object' || b === null) corrupt('base is invalid', path);
    if (!isText(b.file, MAX_BASE_PATH) || b.file.length === 0) corrupt('base file is invalid', path);
    if (!isSafe(b.size, 1, MAX_VIRTUAL_SIZE)) corrupt('base size is invalid', path);
    if (typeof b.fingerprint !== 'string' || !/^[0-9a-f]{64}$/.test(b.fingerprint)) corrupt('base fingerprint is invalid', path);
    base = { file: b.file, size: b.size, fingerprint: b.fingerprint };
  }
  if (!isSafe(o.nextLayer, 1, 10 ** 12)) corrupt('nextLayer is invalid', path);
  if (!isId(o.active)) corrupt('active is invalid', path);
  if (!Array.isArray(o.layers)) corrupt('layers is not a list', path);
  if (o.layers.length === 0) corrupt('there are no layers', path);
  if (o.layers.length > MAX_LAYERS) {
    throw new DeltaDiskError('LIMIT_EXCEEDED', `descriptor lists ${o.layers.length} layers, at most ${MAX_LAYERS} allowed`, { path });
  }
  if (!Array.isArray(o.snapshots)) corrupt('snapshots is not a list', path);
  if (o.snapshots.length > MAX_SNAPSHOTS) {
    throw new DeltaDiskError('LIMIT_EXCEEDED', `descriptor lists ${o.snapshots.length} snapshots, at most ${MAX_SNAPSHOTS} allowed`, { path });
  }

  const layers: LayerEntry[] = [];
  const byId = new Map<string, LayerEntry>();
  const files = new Set<string>();
  for (const item of o.layers as unknown[]) {
    const l = item as Record<string, unknown> | null;
    if (typeof l !== 'object' || l === null) corrupt('a layer entry is not an object', path);
    if (!isId(l.id)) corrupt('a layer id is invalid', path);
    if (!isPlainFileName(l.file)) {
      throw new DeltaDiskError('UNSAFE_PATH', `descriptor: layer file ${JSON.stringify(l.file)} is not a plain file name`, { path });
    }
    if (l.parent !== null && !isId(l.parent)) corrupt(`layer ${l.id} has an invalid parent`, path);
    if (l.parent === l.id) corrupt(`layer ${l.id} is its own parent`, path);
    if (!isText(l.created, 64)) corrupt(`layer ${l.id} has an invalid creation time`, path);
    if (byId.has(l.id)) corrupt(`layer ${l.id} is listed twice`, path);
    if (files.has(l.file)) corrupt(`file ${l.file} is used by two layers`, path);
    const entry: LayerEntry = { id: l.id, file: l.file, parent: l.parent, created: l.created };
    layers.push(entry);
    byId.set(entry.id, entry);
    files.add(entry.file);
  }
  // Parents exist; no cycles; bounded depth. Depths are memoised, so this is linear.
  const depth = new Map<string, number>();
  for (const l of layers) {
    const trail: LayerEntry[] = [];
    const onTrail = new Set<string>();
    let cur: LayerEntry | undefined = l;
    let d = 0;
    while (cur !== undefined && !depth.has(cur.id)) {
      if (onTrail.has(cur.id)) corrupt(`layers form a cycle through ${cur.id}`, path);
      onTrail.add(cur.id);
      trail.push(cur);
      if (cur.parent === null) {
        cur = undefined;
      } else {
        const p = byId.get(cur.parent);
        if (p === undefined) corrupt(`layer ${cur.id} names a parent ${cur.parent} that is not listed`, path);
        cur = p;
      }
    }
    d = cur === undefined ? 0 : depth.get(cur.id)!;
    for (let i = trail.length - 1; i >= 0; i--) {
      d += 1;
      if (d > MAX_DEPTH) {
        throw new DeltaDiskError('LIMIT_EXCEEDED', `descriptor: a chain is deeper than ${MAX_DEPTH} layers`, { path });
      }
      depth.set(trail[i]!.id, d);
    }
  }
  if (!byId.has(o.active)) corrupt(`active layer ${o.active} is not listed`, path);
  if (layers.some((l) => l.parent === o.active)) corrupt('the active layer has children', path);

  const snapshots: SnapshotEntry[] = [];
  const names = new Set<string>();
  const snapIds = new Set<string>();
  const snapLayers = new Set<string>();
  for (const item of o.snapshots as unknown[]) {
    const s = item as Record<string, unknown> | null;
    if (typeof s !== 'object' || s === null) corrupt('a snapshot entry is not an object', path);
    if (!isId(s.id)) corrupt('a snapshot id is invalid', path);
    if (!isValidSnapshotName(s.name)) corrupt(`snapshot ${s.id} has an invalid name`, path);
    if (!isText(s.description, MAX_DESCRIPTION_LENGTH)) corrupt(`snapshot ${s.name} has an invalid description`, path);
    if (!isText(s.created, 64)) corrupt(`snapshot ${s.name} has an invalid creation time`, path);
    if (!isId(s.layer) || !byId.has(s.layer)) corrupt(`snapshot ${s.name} names a layer that is not listed`, path);
    if (s.rows !== undefined && !isSafe(s.rows, 0, Number.MAX_SAFE_INTEGER)) corrupt(`snapshot ${s.name} has an invalid bookmark`, path);
    const bookmark = s.rows !== undefined;
    if (!bookmark && s.layer === o.active) corrupt(`snapshot ${s.name} names the active layer`, path);
    if (names.has(s.name)) corrupt(`snapshot name ${s.name} is used twice`, path);
    if (snapIds.has(s.id)) corrupt(`snapshot id ${s.id} is used twice`, path);
    if (!bookmark && snapLayers.has(s.layer)) corrupt(`two snapshots name layer ${s.layer}`, path);
    names.add(s.name);
    snapIds.add(s.id);
    if (!bookmark) snapLayers.add(s.layer);
    snapshots.push({ id: s.id, name: s.name, description: s.description, created: s.created, layer: s.layer, ...(bookmark ? { rows: s.rows as number } : {}) });
  }

  // Version 2 is written exactly when a bookmark is listed (canonical form).
  if (o.version !== (snapshots.some(isBookmark) ? 2 : 1)) corrupt(`version ${String(o.version)} does not match its snapshots (bookmarks need version 2, and only they)`, path);

  const d: Descriptor = {
    diskId: o.diskId,
    generation: o.generation,
    virtualSize: o.virtualSize,
    blockSize: o.blockSize,
    dedup: o.dedup,
    base,
    nextLayer: o.nextLayer,
    active: o.active,
    layers,
    snapshots,
  };
  if (o.checksum !== checksumOf(d)) {
    throw new DeltaDiskError('CHECKSUM_MISMATCH', 'descriptor checksum does not match its content (damaged, or edited by hand)', { path });
  }
  return d;
}
