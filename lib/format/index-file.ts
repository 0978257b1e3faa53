/**
 * Index files: which packs exist and what they hold.
 *
 * An index file is a frame (framed.ts, magic `DDIX\r\n\x1a\n`) whose payload is
 *
 *     { packs: [ { name: bin 32, size: int, tail: bin } … ] }
 *
 * `tail` is a byte-exact copy of the pack's header and trailer, so the index can be
 * rebuilt from the packs alone and checked against them byte for byte; `name` must be
 * the SHA-256 of `tail` and `size` the pack's file size. The file itself is named by
 * the SHA-256 of its bytes. Index files are written once and never changed; prune
 * replaces them by writing consolidated ones before deleting the old.
 */
import { createHash } from 'node:crypto';
import { DeltaDiskError } from '../errors.js';
import { decodeFramed, encodeFramed, Fields } from './framed.js';
import { PACK_ENTRY_SIZE, PACK_TRAILER_SIZE, validatePackTail } from './pack-header.js';
import { HASH_SIZE, MAX_INDEX_FILE, MAX_INDEX_PACKS, MAX_PACK_BLOBS, MAX_PACK_SIZE } from './repo-limits.js';

export const INDEX_MAGIC = Buffer.from('DDIX\r\n\x1a\n', 'latin1');

export interface IndexedPack {
  /** Hex SHA-256 of `tail`. */
  readonly name: string;
  readonly size: number;
  /** The pack's header and trailer, byte for byte. */
  readonly tail: Buffer;
}

export function encodeIndexFile(packs: readonly IndexedPack[]): Buffer {
  if (packs.length > MAX_INDEX_PACKS) throw new DeltaDiskError('LIMIT_EXCEEDED', `an index file lists at most ${MAX_INDEX_PACKS} packs`);
  const out = encodeFramed(INDEX_MAGIC, { packs: packs.map((p) => ({ name: Buffer.from(p.name, 'hex'), size: p.size, tail: p.tail })) });
  if (out.length > MAX_INDEX_FILE) throw new DeltaDiskError('LIMIT_EXCEEDED', `index file of ${out.length} bytes exceeds ${MAX_INDEX_FILE}`);
  return out;
}

/** The name of an index file with these bytes. */
export function indexNameOf(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/**
 * Decodes and validates an index file: every pack's tail must decode and fill the
 * declared size, and hash to the pack's name.
 * @param name when given, the file's own name, checked against its content.
 * @throws REPO_CORRUPT, UNSUPPORTED_VERSION, LIMIT_EXCEEDED
 */
export function decodeIndexFile(bytes: Uint8Array, name?: string, path?: string): IndexedPack[] {
  if (name !== undefined && indexNameOf(bytes) !== name) {
    throw new DeltaDiskError('REPO_CORRUPT', 'index file: content does not match its name (damaged)', { path });
  }
  const v = decodeFramed(bytes, INDEX_MAGIC, 'index file', MAX_INDEX_FILE, {
    maxStrLength: 16,
    maxBinLength: MAX_PACK_BLOBS * PACK_ENTRY_SIZE + PACK_TRAILER_SIZE,
    maxArrayLength: MAX_INDEX_PACKS,
    maxMapLength: 8,
  }, path);
  const f: Fields = new Fields(v, 'index file', path);
  const out: IndexedPack[] = [];
  for (const item of f.array('packs', MAX_INDEX_PACKS)) {
    const p = new Fields(item, 'index file pack', path);
    const name = p.bin('name', HASH_SIZE).toString('hex');
    const size = p.int('size', PACK_TRAILER_SIZE + PACK_ENTRY_SIZE, MAX_PACK_SIZE);
    const tail = Buffer.from(p.bin('tail'));
    if (createHash('sha256').update(tail).digest('hex') !== name) p.fail(`pack ${name} header does not match its name`);
    validatePackTail(tail, size, path);
    out.push({ name, size, tail });
  }
  return out;
}
