/**
 * The repository's `config` file: human-readable JSON naming the format and the
 * parameters every writer must use, so that chunks cut by different processes (or
 * versions) deduplicate. It is written once, by `repo init`, and is the commit point
 * of initialisation: a directory is a repository exactly when it holds a valid config.
 *
 *     { format: "deltadisk-repository", version: 1, id, created,
 *       chunker: { gearSeed, min, avg, max }, fixedChunkSize, packSize, checksum }
 *
 * `gearSeed` (32 hex digits) derives the FastCDC gear table, so cut points differ
 * between repositories (as restic's per-repository polynomial does). `checksum` is the
 * CRC-32 (8 hex digits) of the canonical JSON of the other fields.
 */
import { crc32 } from 'node:zlib';
import { DeltaDiskError } from '../errors.js';
import { HEX32 } from './framed.js';
import {
  CDC_MAX,
  FIXED_CHUNK_SIZE,
  MAX_BLOB_SIZE,
  MAX_CONFIG_BYTES,
  MIN_FIXED_CHUNK,
  PACK_TARGET_SIZE,
  REPO_FORMAT_VERSION,
} from './repo-limits.js';

export interface ChunkerParams {
  readonly gearSeed: string;
  readonly min: number;
  readonly avg: number;
  readonly max: number;
}

export interface RepoConfig {
  readonly id: string;
  readonly created: string;
  readonly chunker: ChunkerParams;
  readonly fixedChunkSize: number;
  readonly packSize: number;
}

function canonical(c: RepoConfig): string {
  return JSON.stringify({
    format: 'deltadisk-repository',
    version: REPO_FORMAT_VERSION,
    id: c.id,
    created: c.created,
    chunker: { gearSeed: c.chunker.gearSeed, min: c.chunker.min, avg: c.chunker.avg, max: c.chunker.max },
    fixedChunkSize: c.fixedChunkSize,
    packSize: c.packSize,
  });
}

export function encodeRepoConfig(c: RepoConfig): Buffer {
  const obj = JSON.parse(canonical(c)) as Record<string, unknown>;
  obj.checksum = crc32(Buffer.from(canonical(c))).toString(16).padStart(8, '0');
  return Buffer.from(`${JSON.stringify(obj, null, 2)}\n`);
}

function isPow2(n: unknown, min: number, max: number): n is number {
  return typeof n === 'number' && Number.isSafeInteger(n) && n >= min && n <= max && (n & (n - 1)) === 0;
}

/** @throws REPO_CORRUPT, UNSUPPORTED_VERSION, LIMIT_EXCEEDED */
export function decodeRepoConfig(bytes: Uint8Array, path?: string): RepoConfig {
  const bad = (m: string): never => {
    throw new DeltaDiskError('REPO_CORRUPT', `repository config: ${m}`, { path });
  };
  if (bytes.length > MAX_CONFIG_BYTES) throw new DeltaDiskError('LIMIT_EXCEEDED', `repository config exceeds ${MAX_CONFIG_BYTES} bytes`, { path });
  let v: unknown;
  try {
    v = JSON.parse(Buffer.from(bytes).toString('utf8'));
  } catch {
    return bad('not JSON');
  }
  if (typeof v !== 'object' || v === null) return bad('not an object');
  const o = v as Record<string, unknown>;
  if (o.format !== 'deltadisk-repository') return bad('not a deltadisk repository config');
  if (o.version !== REPO_FORMAT_VERSION) {
    throw new DeltaDiskError('UNSUPPORTED_VERSION', `repository format version ${String(o.version)} is not supported`, { path });
  }
  const ch = o.chunker as Record<string, unknown> | undefined;
  if (typeof o.id !== 'string' || !HEX32.test(o.id) || typeof o.created !== 'string' || o.created.length > 64) bad('id or created is invalid');
  if (typeof ch !== 'object' || ch === null || typeof ch.gearSeed !== 'string' || !HEX32.test(ch.gearSeed)) return bad('chunker is invalid');
  if (!isPow2(ch.avg, 4096, CDC_MAX) || typeof ch.min !== 'number' || typeof ch.max !== 'number' || !Number.isSafeInteger(ch.min) ||
    !Number.isSafeInteger(ch.max) || ch.min < 64 || ch.min >= ch.avg || ch.max <= ch.avg || ch.max > CDC_MAX) {
    return bad('chunker sizes are invalid');
  }
  if (!isPow2(o.fixedChunkSize, MIN_FIXED_CHUNK, MAX_BLOB_SIZE)) bad('fixedChunkSize is invalid');
  if (typeof o.packSize !== 'number' || !Number.isSafeInteger(o.packSize) || o.packSize < 1024 * 1024 || o.packSize > 256 * 1024 * 1024) bad('packSize is invalid');
  const config: RepoConfig = {
    id: o.id as string,
    created: o.created as string,
    chunker: { gearSeed: ch.gearSeed, min: ch.min, avg: ch.avg, max: ch.max },
    fixedChunkSize: o.fixedChunkSize as number,
    packSize: o.packSize as number,
  };
  if (o.checksum !== crc32(Buffer.from(canonical(config))).toString(16).padStart(8, '0')) bad('checksum mismatch');
  return config;
}

export const DEFAULT_PACK_SIZE = PACK_TARGET_SIZE;
export const DEFAULT_FIXED_CHUNK = FIXED_CHUNK_SIZE;
