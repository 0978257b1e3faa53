/**
 * VMDK text descriptors (the `.vmdk` text file, or the text embedded in a hosted
 * sparse extent): header, extent list, disk database.
 *
 * Pure (no I/O). Strict where a wrong reading would send us to the wrong file or
 * the wrong size, lenient where nothing depends on it:
 *  - the first statement must be `version=` (1, 2 or 3), as QEMU requires to call
 *    a file a descriptor; later versions are UNSUPPORTED_VERSION;
 *  - every extent line must parse completely (`ACCESS SECTORS TYPE "FILE" [OFFSET]`),
 *    with the per-type rules of QEMU (FLAT needs an offset, VMFS and the sparse types
 *    take none, ZERO names no file); any other line that is not a comment, a header
 *    key or a `ddb.` entry is VM_INVALID: nothing is guessed;
 *  - CID and parentCID are up to 8 hex digits when present (normalised to 8); the disk database keeps
 *    values as opaque strings (a malformed `ddb.longContentID` does not fail the file);
 *  - sizes are bounded (1 MiB of text, 32768 extents, 2^50 bytes of capacity).
 * File names are returned as written: they are data, resolved only by the caller
 * through the path guard.
 */
import { DeltaDiskError } from '../errors.js';
import { MAX_VIRTUAL_SIZE } from '../format/limits.js';
import { decodeConfigText, unescapeValue } from './kv-text.js';

export const MAX_VMDK_DESCRIPTOR_BYTES = 1024 * 1024;
export const MAX_VMDK_EXTENTS = 32768;
export const SECTOR = 512;
/** parentCID of a disk without parent. */
export const NO_PARENT_CID = 'ffffffff';

export type ExtentAccess = 'RW' | 'RDONLY' | 'NOACCESS';
export type ExtentType = 'FLAT' | 'SPARSE' | 'ZERO' | 'VMFS' | 'VMFSSPARSE' | 'SESPARSE' | 'VMFSRDM' | 'VMFSRAW';

export interface VmdkExtent {
  readonly access: ExtentAccess;
  readonly sectors: number;
  readonly type: ExtentType;
  /** As written; undefined for ZERO extents. */
  readonly file: string | undefined;
  /** Start within the file, in sectors (FLAT only; 0 otherwise). */
  readonly offset: number;
}

export interface VmdkDescriptor {
  readonly version: number;
  readonly encoding: string;
  /** 8 lower-case hex digits (zero-padded), or undefined when absent. */
  readonly cid: string | undefined;
  readonly parentCid: string | undefined;
  readonly createType: string;
  readonly parentFileNameHint: string | undefined;
  readonly changeTrackPath: string | undefined;
  readonly extents: readonly VmdkExtent[];
  /** Disk database, keys lower-cased without the `ddb.` prefix. */
  readonly ddb: ReadonlyMap<string, string>;
  /** Σ extent sectors × 512. */
  readonly capacity: number;
}

const TYPES = new Set<string>(['FLAT', 'SPARSE', 'ZERO', 'VMFS', 'VMFSSPARSE', 'SESPARSE', 'VMFSRDM', 'VMFSRAW']);
const ACCESS = new Set<string>(['RW', 'RDONLY', 'NOACCESS']);
const EXTENT = /^(\S+)\s+(\d{1,20})\s+(\S+)(?:\s+"([^"]*)"(?:\s+(\d{1,20}))?)?\s*$/;
const HEADER = /^([A-Za-z][A-Za-z0-9_.]*)\s*=\s*(.*?)\s*$/;

/** createType values whose data is not in files we could copy (devices, raw device mappings). */
export const DEVICE_CREATE_TYPES = new Set(
  ['vmfsRaw', 'vmfsRDM', 'vmfsRawDeviceMap', 'vmfsRDMP', 'vmfsPassthroughRawDeviceMap', 'fullDevice', 'partitionedDevice'].map((t) => t.toLowerCase()),
);

function invalid(what: string, line: number, why: string): never {
  throw new DeltaDiskError('VM_INVALID', `${what}, line ${line}: ${why}`);
}

function unquote(v: string): string {
  return v.length >= 2 && v.startsWith('"') && v.endsWith('"') ? v.slice(1, -1) : v;
}

/**
 * Parses descriptor bytes. Trailing NULs (the padding of an embedded descriptor)
 * are ignored; a NUL inside the text is VM_INVALID.
 * @throws VM_INVALID, UNSUPPORTED_VERSION, LIMIT_EXCEEDED
 */
export function parseVmdkDescriptor(bytes: Uint8Array, what = 'VMDK descriptor'): VmdkDescriptor {
  let end = bytes.length;
  while (end > 0 && bytes[end - 1] === 0) end--;
  const body = bytes.subarray(0, end);
  if (body.includes(0)) throw new DeltaDiskError('VM_INVALID', `${what} contains NUL bytes: not a text descriptor`);
  const { text, encoding } = decodeConfigText(body, MAX_VMDK_DESCRIPTOR_BYTES, what, 'encoding');
  const header = new Map<string, string>();
  const ddb = new Map<string, string>();
  const extents: VmdkExtent[] = [];
  let sawVersion = false;
  let capacitySectors = 0;
  const lines = text.split(/\r?\n|\r/);
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.trim();
    if (line === '' || line.startsWith('#')) continue;
    const kv = HEADER.exec(line);
    if (!sawVersion) {
      if (kv === null || kv[1]!.toLowerCase() !== 'version') invalid(what, i + 1, 'the first statement must be version=');
      sawVersion = true;
    }
    if (kv !== null && kv[1]!.toLowerCase().startsWith('ddb.')) {
      ddb.set(kv[1]!.slice(4).toLowerCase(), unescapeValue(unquote(kv[2]!)));
      continue;
    }
    if (kv !== null) {
      const key = kv[1]!.toLowerCase();
      if (header.has(key)) invalid(what, i + 1, `${kv[1]} is given twice`);
      header.set(key, unquote(kv[2]!));
      continue;
    }
    const m = EXTENT.exec(line);
    if (m === null) invalid(what, i + 1, 'not a comment, a header key, a ddb entry or an extent line');
    if (extents.length >= MAX_VMDK_EXTENTS) throw new DeltaDiskError('LIMIT_EXCEEDED', `${what} lists more than ${MAX_VMDK_EXTENTS} extents`);
    const extent = parseExtent(m, what, i + 1);
    capacitySectors += extent.sectors;
    if (capacitySectors * SECTOR > MAX_VIRTUAL_SIZE) throw new DeltaDiskError('LIMIT_EXCEEDED', `${what}: the extents add up to more than ${MAX_VIRTUAL_SIZE} bytes`);
    extents.push(extent);
  }
  if (!sawVersion) throw new DeltaDiskError('VM_INVALID', `${what} is empty: not a VMDK descriptor`);
  const versionText = header.get('version')!;
  if (!/^\d{1,3}$/.test(versionText)) throw new DeltaDiskError('VM_INVALID', `${what}: version ${JSON.stringify(versionText)} is not a number`);
  const version = Number(versionText);
  if (version < 1 || version > 3) throw new DeltaDiskError('UNSUPPORTED_VERSION', `${what}: descriptor version ${version} is not supported (1 to 3 are)`);
  const createType = header.get('createtype');
  if (createType === undefined || createType === '') throw new DeltaDiskError('VM_INVALID', `${what} has no createType`);
  if (extents.length === 0) throw new DeltaDiskError('VM_INVALID', `${what} lists no extent`);
  return {
    version,
    encoding,
    cid: cidOf(header.get('cid'), 'CID', what),
    parentCid: cidOf(header.get('parentcid'), 'parentCID', what),
    createType,
    parentFileNameHint: nonEmpty(header.get('parentfilenamehint')),
    changeTrackPath: nonEmpty(header.get('changetrackpath')),
    extents,
    ddb,
    capacity: capacitySectors * SECTOR,
  };
}

function parseExtent(m: RegExpExecArray, what: string, line: number): VmdkExtent {
  const access = m[1]!.toUpperCase();
  const type = m[3]!.toUpperCase();
  if (!ACCESS.has(access)) invalid(what, line, `unknown extent access ${JSON.stringify(m[1])}`);
  if (!TYPES.has(type)) invalid(what, line, `unknown extent type ${JSON.stringify(m[3])}`);
  const sectors = Number(m[2]);
  if (!Number.isSafeInteger(sectors) || sectors <= 0 || sectors * SECTOR > MAX_VIRTUAL_SIZE) invalid(what, line, `extent size ${m[2]} sectors is out of range`);
  const file = m[4];
  const offsetText = m[5];
  if (type === 'ZERO') {
    if (file !== undefined) invalid(what, line, 'a ZERO extent names no file');
    return { access: access as ExtentAccess, sectors, type: 'ZERO', file: undefined, offset: 0 };
  }
  if (file === undefined || file === '') invalid(what, line, `a ${type} extent needs a quoted file name`);
  if (type === 'FLAT' && offsetText === undefined) invalid(what, line, 'a FLAT extent needs an offset');
  if (type !== 'FLAT' && offsetText !== undefined) invalid(what, line, `a ${type} extent takes no offset`);
  const offset = offsetText === undefined ? 0 : Number(offsetText);
  if (!Number.isSafeInteger(offset) || offset * SECTOR > Number.MAX_SAFE_INTEGER) invalid(what, line, `extent offset ${offsetText} is out of range`);
  return { access: access as ExtentAccess, sectors, type: type as ExtentType, file, offset };
}

function cidOf(v: string | undefined, key: string, what: string): string | undefined {
  if (v === undefined) return undefined;
  // QEMU writes CIDs with %x, without leading zeros: "6efc13" is CID 006efc13.
  if (!/^[0-9a-fA-F]{1,8}$/.test(v)) throw new DeltaDiskError('VM_INVALID', `${what}: ${key} ${JSON.stringify(v)} is not 1 to 8 hex digits`);
  return v.toLowerCase().padStart(8, '0');
}

function nonEmpty(v: string | undefined): string | undefined {
  return v === undefined || v === '' ? undefined : v;
}

/** True when the descriptor describes a device or raw mapping rather than files we can copy. */
export function isDeviceBacked(d: VmdkDescriptor): boolean {
  return DEVICE_CREATE_TYPES.has(d.createType.toLowerCase()) || d.extents.some((e) => e.type === 'VMFSRDM' || e.type === 'VMFSRAW');
}
