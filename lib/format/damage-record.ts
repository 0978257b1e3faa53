/**
 * Damage records (`damaged/<pack name>`): a pack `check` found missing, unreadable,
 * or holding blobs that do not match their hashes.
 *
 * A frame (framed.ts, magic `DDDM\r\n\x1a\n`) with payload
 *
 *     { pack: bin 32, time, reason, blobs: [bin 32 …] }
 *
 * `blobs` lists the damaged blobs (empty when the whole pack is missing or
 * unreadable). While the record exists no backup deduplicates against a chunk in that
 * pack, so the next backup stores such chunks again, and every reader prefers those
 * new copies: older backups that share the chunks are healed. Prune removes the
 * record with the pack; a full `check --read-data` removes it when the pack reads
 * whole again.
 */
import { decodeFramed, encodeFramed, Fields } from './framed.js';
import { HASH_SIZE, MAX_TEXT, MAX_VERIFY_BYTES } from './repo-limits.js';

export const DAMAGE_MAGIC = Buffer.from('DDDM\r\n\x1a\n', 'latin1');
const MAX_BLOBS = 65536;

export interface DamageRecord {
  readonly pack: string;
  readonly time: string;
  readonly reason: string;
  readonly blobs: readonly string[];
}

export function encodeDamageRecord(r: DamageRecord): Buffer {
  return encodeFramed(DAMAGE_MAGIC, {
    pack: Buffer.from(r.pack, 'hex'),
    time: r.time,
    reason: r.reason.slice(0, MAX_TEXT),
    blobs: r.blobs.slice(0, MAX_BLOBS).map((h) => Buffer.from(h, 'hex')),
  });
}

export function decodeDamageRecord(bytes: Uint8Array, path?: string): DamageRecord {
  const v = decodeFramed(bytes, DAMAGE_MAGIC, 'damage record', MAX_VERIFY_BYTES, {
    maxStrLength: 4 * MAX_TEXT,
    maxBinLength: HASH_SIZE,
    maxArrayLength: MAX_BLOBS,
    maxMapLength: 16,
  }, path);
  const f: Fields = new Fields(v, 'damage record', path);
  const blobs = f.array('blobs', MAX_BLOBS).map((b) => {
    if (!(b instanceof Uint8Array) || b.length !== HASH_SIZE) f.fail('a blob hash is invalid');
    return Buffer.from(b).toString('hex');
  });
  return { pack: f.bin('pack', HASH_SIZE).toString('hex'), time: f.str('time', 64), reason: f.str('reason', MAX_TEXT), blobs };
}
