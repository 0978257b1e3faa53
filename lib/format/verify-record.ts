/**
 * Verification records (`verify/<backup-id>`): a backup found damaged by `check`.
 *
 * A frame (framed.ts, magic `DDVF\r\n\x1a\n`) with payload
 *
 *     { backup, time, problems: [text …] }
 *
 * A backup with a record is never the base of an incremental backup (the damaged
 * packs themselves are recorded in damage records, damage-record.ts). A later full
 * `check --read-data` that finds the backup whole removes the record.
 */
import { decodeFramed, encodeFramed, Fields, HEX32 } from './framed.js';
import { MAX_TEXT, MAX_VERIFY_BYTES } from './repo-limits.js';

export const VERIFY_MAGIC = Buffer.from('DDVF\r\n\x1a\n', 'latin1');

export interface VerifyRecord {
  readonly backup: string;
  readonly time: string;
  readonly problems: readonly string[];
}

export function encodeVerifyRecord(r: VerifyRecord): Buffer {
  return encodeFramed(VERIFY_MAGIC, {
    backup: r.backup,
    time: r.time,
    problems: r.problems.slice(0, 1000).map((p) => p.slice(0, MAX_TEXT)),
  });
}

export function decodeVerifyRecord(bytes: Uint8Array, path?: string): VerifyRecord {
  const v = decodeFramed(bytes, VERIFY_MAGIC, 'verification record', MAX_VERIFY_BYTES, {
    maxStrLength: 4 * MAX_TEXT,
    maxBinLength: 0,
    maxArrayLength: 1000,
    maxMapLength: 16,
  }, path);
  const f: Fields = new Fields(v, 'verification record', path);
  const backup = f.str('backup', 32);
  if (!HEX32.test(backup)) f.fail('backup id is invalid');
  return { backup, time: f.str('time', 64), problems: f.strings('problems', 1000, MAX_TEXT) };
}
