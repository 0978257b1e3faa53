/**
 * Encode and decode the state record of an unfinished multi-step operation
 * (`<name>.chain.op`, format version 1).
 *
 * A merge writes this record (atomic replace) before it touches any layer, updates
 * its progress mark as it goes, and removes it last. On the next writable open the
 * operation is resumed from it; a record whose layers no longer match the files is
 * refused (STATE_MISMATCH) rather than guessed at. JSON with a CRC-32 over the
 * canonical form, like the descriptor.
 */
import { crc32 } from 'node:zlib';
import { DeltaDiskError } from '../errors.js';
import { MAX_LAYERS, MAX_NAME_LENGTH } from './limits.js';

export const OP_FORMAT = 'deltadisk-op';
export const OP_VERSION = 1;
export const MAX_OP_BYTES = 64 * 1024;

export interface MergeState {
  readonly op: 'merge';
  readonly diskId: string;
  /** stream: the removed layer's blocks go up into each of its children (the survivors).
   *  commit: the removed child's blocks go down into its parent (the one survivor). */
  readonly direction: 'stream' | 'commit';
  readonly removed: { readonly id: string; readonly file: string; readonly generation: number };
  readonly survivors: readonly { readonly id: string; readonly file: string }[];
  /** Blocks below this index are already copied (and durable in the survivor). */
  readonly progress: number;
  readonly started: string;
}

export type OpState = MergeState;

function canonical(s: OpState): string {
  return JSON.stringify({
    format: OP_FORMAT,
    version: OP_VERSION,
    op: s.op,
    diskId: s.diskId,
    direction: s.direction,
    removed: { id: s.removed.id, file: s.removed.file, generation: s.removed.generation },
    survivors: s.survivors.map((v) => ({ id: v.id, file: v.file })),
    progress: s.progress,
    started: s.started,
  });
}

export function encodeOpState(s: OpState): Buffer {
  const obj = JSON.parse(canonical(s)) as Record<string, unknown>;
  obj.checksum = crc32(Buffer.from(canonical(s))).toString(16).padStart(8, '0');
  return Buffer.from(`${JSON.stringify(obj, null, 2)}\n`);
}

function bad(message: string, path?: string): never {
  throw new DeltaDiskError('STATE_MISMATCH', `operation state: ${message}`, { path });
}

const ID = /^[0-9a-f-]{8,64}$/;
const isSafe = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
const isFile = (v: unknown): v is string =>
  // eslint-disable-next-line no-control-regex
  typeof v === 'string' && v.length > 0 && v.length <= MAX_NAME_LENGTH && !/[/\\\x00-\x1f]/.test(v) && v !== '.' && v !== '..';

export function decodeOpState(text: string, path?: string): OpState {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    bad('not valid JSON', path);
  }
  const o = raw as Record<string, unknown> | null;
  if (typeof o !== 'object' || o === null) bad('not an object', path);
  if (o.format !== OP_FORMAT) bad('unknown format', path);
  if (o.version !== OP_VERSION) {
    throw new DeltaDiskError('UNSUPPORTED_VERSION', `operation state version ${String(o.version)} is not supported`, { path });
  }
  if (o.op !== 'merge') bad(`unknown operation ${JSON.stringify(o.op)}`, path);
  if (typeof o.diskId !== 'string' || !ID.test(o.diskId)) bad('invalid disk id', path);
  if (o.direction !== 'stream' && o.direction !== 'commit') bad('invalid direction', path);
  const r = o.removed as Record<string, unknown> | null;
  if (typeof r !== 'object' || r === null || typeof r.id !== 'string' || !ID.test(r.id) || !isFile(r.file) || !isSafe(r.generation)) {
    bad('invalid removed layer', path);
  }
  if (!Array.isArray(o.survivors) || o.survivors.length === 0 || o.survivors.length > MAX_LAYERS) bad('invalid survivors', path);
  const survivors: { id: string; file: string }[] = [];
  for (const item of o.survivors as unknown[]) {
    const s = item as Record<string, unknown> | null;
    if (typeof s !== 'object' || s === null || typeof s.id !== 'string' || !ID.test(s.id) || !isFile(s.file)) {
      bad('invalid survivor layer', path);
    }
    survivors.push({ id: s.id, file: s.file });
  }
  if (o.direction === 'commit' && survivors.length !== 1) bad('a commit has exactly one survivor', path);
  if (!isSafe(o.progress)) bad('invalid progress', path);
  if (typeof o.started !== 'string' || o.started.length > 64) bad('invalid start time', path);
  const state: MergeState = {
    op: 'merge',
    diskId: o.diskId,
    direction: o.direction,
    removed: { id: r.id, file: r.file, generation: r.generation },
    survivors,
    progress: o.progress,
    started: o.started,
  };
  if (o.checksum !== crc32(Buffer.from(canonical(state))).toString(16).padStart(8, '0')) {
    throw new DeltaDiskError('CHECKSUM_MISMATCH', 'operation state checksum does not match its content', { path });
  }
  return state;
}
