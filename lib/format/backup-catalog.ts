/**
 * The backup catalog file: what each manifest of a repository says about when it was
 * taken and which chain disks it holds, kept on the machine that read it (never in the
 * repository), so a backup need not read every manifest to find the one it builds on.
 *
 * A framed file (format/framed.ts, magic `DDBC\r\n\x1a\n`) whose payload is
 *
 *     { repo: str,                          the repository id
 *       backups: [ [ id: str, size: int,    the manifest's name and size
 *                    time: str, end: str,   its capture and end times
 *                    disks: [str] ] … ] }   the disk ids of its chain entries, in entry order
 *
 * Decoding bounds every length before allocating and checks every field: a file that
 * does not decode is a miss for the caller, never an error.
 */
import { decodeFramed, encodeFramed, HEX32 } from './framed.js';
import { MAX_ENTRIES, MAX_MANIFEST_BYTES } from './repo-limits.js';
import { DeltaDiskError } from '../errors.js';

export const BACKUP_CATALOG_MAGIC = Buffer.from('DDBC\r\n\x1a\n', 'latin1');

/** Backups a catalog holds at most (a backup a day for over a thousand years). */
export const MAX_CATALOG_BACKUPS = 1 << 19;
/** Bytes of a catalog file at most. */
export const MAX_CATALOG_BYTES = 256 * 1024 * 1024;
/** Characters of a time or a disk id at most (both are far shorter). */
const MAX_FIELD = 64;

/** What the catalog keeps of one manifest. */
export interface CatalogedBackup {
  /** Bytes of the manifest file, as it was read (kept for diagnostics: a manifest is never rewritten). */
  readonly size: number;
  readonly time: string;
  readonly end: string;
  /** Disk ids of the manifest's chain entries, in entry order. */
  readonly disks: readonly string[];
}

export interface BackupCatalogFile {
  readonly repo: string;
  readonly backups: ReadonlyMap<string, CatalogedBackup>;
}

export function encodeBackupCatalog(c: BackupCatalogFile): Buffer {
  return encodeFramed(BACKUP_CATALOG_MAGIC, {
    repo: c.repo,
    backups: [...c.backups].map(([id, b]) => [id, b.size, b.time, b.end, b.disks]),
  });
}

function corrupt(message: string, path?: string): never {
  throw new DeltaDiskError('REPO_CORRUPT', `backup catalog: ${message}`, { path });
}

const isField = (v: unknown): v is string => typeof v === 'string' && v.length > 0 && v.length <= MAX_FIELD;

/** @throws REPO_CORRUPT, UNSUPPORTED_VERSION, LIMIT_EXCEEDED */
export function decodeBackupCatalog(bytes: Uint8Array, path?: string): BackupCatalogFile {
  const v = decodeFramed(bytes, BACKUP_CATALOG_MAGIC, 'backup catalog', MAX_CATALOG_BYTES, {
    maxStrLength: MAX_FIELD,
    maxBinLength: 0,
    maxArrayLength: Math.max(MAX_CATALOG_BACKUPS, MAX_ENTRIES),
    maxMapLength: 2,
  }, path);
  if (typeof v !== 'object' || v === null || Array.isArray(v)) corrupt('not a map', path);
  const o = v as Record<string, unknown>;
  if (typeof o.repo !== 'string' || !HEX32.test(o.repo)) corrupt('repository id is invalid', path);
  if (!Array.isArray(o.backups) || o.backups.length > MAX_CATALOG_BACKUPS) corrupt('backups is not a list', path);
  const backups = new Map<string, CatalogedBackup>();
  for (const row of o.backups as unknown[]) {
    if (!Array.isArray(row) || row.length !== 5) corrupt('a backup row is not [id, size, time, end, disks]', path);
    const [id, size, time, end, disks] = row as unknown[];
    if (typeof id !== 'string' || !HEX32.test(id) || backups.has(id)) corrupt('a backup id is invalid or repeated', path);
    if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 1 || size > MAX_MANIFEST_BYTES) corrupt(`backup ${id} has an invalid size`, path);
    if (!isField(time) || !isField(end)) corrupt(`backup ${id} has invalid times`, path);
    if (!Array.isArray(disks) || disks.length > MAX_ENTRIES || !disks.every(isField)) corrupt(`backup ${id} has invalid disk ids`, path);
    backups.set(id, { size, time, end, disks: disks as string[] });
  }
  return { repo: o.repo, backups };
}
