/**
 * The checksum recipe of deltadisk's JSON files (descriptor, operation state) as
 * docs/FORMAT.md states it, built independently of the encoders under test: CRC-32
 * of the compact JSON of the listed fields in their order, without `checksum`.
 */
import { crc32 } from 'node:zlib';

/** `o` as JSON text with the documented checksum over `fields` appended. */
export function withChecksum(fields: readonly string[], o: Record<string, unknown>): string {
  const canon: Record<string, unknown> = {};
  for (const k of fields) if (k in o) canon[k] = o[k];
  const checksum = crc32(Buffer.from(JSON.stringify(canon))).toString(16).padStart(8, '0');
  return JSON.stringify({ ...o, checksum });
}
