/**
 * Verification records (`verify/<backup-id>`): a backup found damaged by `check`.
 *
 * A frame (framed.ts, magic `DDVF\r\n\x1a\n`) with payload
 *
 *     { backup, time, problems: [text …], badPacks: [bin 32 …] }
 *
 * A backup with a record is never the base of an incremental backup, and no backup
 * deduplicates against a chunk stored in a listed pack (so the next backup stores
 * such chunks again, healing the older backups that share them). A later `check`
 * that finds the backup whole removes the record.
 */
import { decodeFramed, encodeFramed, Fields, HEX32 } from './framed.js';
import { HASH_SIZE, MAX_TEXT, MAX_VERIFY_BYTES } from './repo-limits.js';

export const VERIFY_MAGIC = Buffer.from('DDVF\r\n\x1a\n', 'latin1');
const MAX_ITEMS = 100_000;

export interface VerifyRecord {
  readonly backup: string;
  readonly time: string;
  readonly problems: readonly string[];
  readonly badPacks: readonly string[];
}

export function encodeVerifyRecord(r: VerifyRecord): Buffer {
  return encodeFramed(VERIFY_MAGIC, {
    backup: r.backup,
    time: r.time,
    problems: r.problems.slice(0, 1000).map((p) => p.slice(0, MAX_TEXT)),
    badPacks: r.badPacks.slice(0, MAX_ITEMS).map((n) => Buffer.from(n, 'hex')),
  });
}

export function decodeVerifyRecord(bytes: Uint8Array, path?: string): VerifyRecord {
  const v = decodeFramed(bytes, VERIFY_MAGIC, 'verification record', MAX_VERIFY_BYTES, {
    maxStrLength: 4 * MAX_TEXT,
    maxBinLength: HASH_SIZE,
    maxArrayLength: MAX_ITEMS,
    maxMapLength: 16,
  }, path);
  const f: Fields = new Fields(v, 'verification record', path);
  const backup = f.str('backup', 32);
  if (!HEX32.test(backup)) f.fail('backup id is invalid');
  const badPacks = f.array('badPacks', MAX_ITEMS).map((b) => {
    if (!(b instanceof Uint8Array) || b.length !== HASH_SIZE) f.fail('a pack name is invalid');
    return Buffer.from(b).toString('hex');
  });
  return { backup, time: f.str('time', 64), problems: f.strings('problems', 1000, MAX_TEXT), badPacks };
}
