/**
 * The `.vmsn` file deltadisk writes for a VM-level snapshot of chain disks: a copy
 * of the configuration and the record of which disk snapshots belong to it.
 *
 * It deliberately does not imitate VMware's binary vmsn (magic 0xbed2bed0 …): no
 * VMware product can use a snapshot of deltadisk chain disks, and a distinct magic
 * lets every reader tell the two apart. Layout (docs/FORMAT.md, "VM snapshot state"):
 *
 *   0   8  magic "DDVMSN\r\n"
 *   8   4  version (1)
 *   12  4  metadata length M (≤ 1 MiB)
 *   16  4  configuration length C (≤ 1 MiB)
 *   20  4  CRC-32 of the metadata
 *   24  4  CRC-32 of the configuration
 *   28  4  CRC-32 of bytes 0…27
 *   32  M  metadata, JSON (UTF-8)
 *   32+M C  the .vmx as it was, byte for byte
 *
 * Decoding checks every length against the file size and the caps before
 * allocating, and every CRC.
 */
import { crc32 } from 'node:zlib';
import { DeltaDiskError } from '../errors.js';

export const VMSN_MAGIC = Buffer.from('DDVMSN\r\n', 'latin1');
export const VMSN_VERSION = 1;
export const VMSN_HEADER = 32;
export const MAX_VMSN_METADATA = 1024 * 1024;
export const MAX_VMSN_CONFIG = 1024 * 1024;

export interface VmsnDisk {
  readonly node: string;
  /** The chain descriptor, as the vmx names it. */
  readonly fileName: string;
  readonly snapshotId: string;
  readonly snapshotName: string;
}

export interface VmsnMetadata {
  readonly uid: number;
  readonly name: string;
  readonly description: string;
  readonly created: string;
  /** The configuration file's name in the VM directory. */
  readonly vmx: string;
  readonly disks: readonly VmsnDisk[];
  /** The memory-state file stored with the snapshot, or null. */
  readonly memory: { readonly file: string; readonly size: number } | null;
  /** `quiesced` or `crash-consistent`. */
  readonly consistency: string;
}

export interface Vmsn {
  readonly metadata: VmsnMetadata;
  readonly config: Buffer;
}

export function encodeVmsn(v: Vmsn): Buffer {
  const meta = Buffer.from(JSON.stringify({ format: 'deltadisk-vmsn', ...v.metadata }), 'utf8');
  if (meta.length > MAX_VMSN_METADATA || v.config.length > MAX_VMSN_CONFIG) {
    throw new DeltaDiskError('LIMIT_EXCEEDED', 'snapshot state exceeds the vmsn limits (1 MiB of metadata, 1 MiB of configuration)');
  }
  const head = Buffer.alloc(VMSN_HEADER);
  VMSN_MAGIC.copy(head, 0);
  head.writeUInt32LE(VMSN_VERSION, 8);
  head.writeUInt32LE(meta.length, 12);
  head.writeUInt32LE(v.config.length, 16);
  head.writeUInt32LE(crc32(meta), 20);
  head.writeUInt32LE(crc32(v.config), 24);
  head.writeUInt32LE(crc32(head.subarray(0, 28)), 28);
  return Buffer.concat([head, meta, v.config]);
}

/** True when the bytes start like a vmsn we wrote (to tell ours from VMware's). */
export function isOurVmsn(head: Uint8Array): boolean {
  return head.length >= 8 && Buffer.from(head.buffer, head.byteOffset, 8).equals(VMSN_MAGIC);
}

/** @throws CHAIN_CORRUPT (not ours, damaged), CHECKSUM_MISMATCH, UNSUPPORTED_VERSION, TRUNCATED, LIMIT_EXCEEDED */
export function decodeVmsn(b: Buffer, path?: string): Vmsn {
  const where = path ?? 'vmsn';
  if (b.length < VMSN_HEADER) throw new DeltaDiskError('TRUNCATED', `${where} is shorter than its header`, { path });
  if (!isOurVmsn(b)) throw new DeltaDiskError('CHAIN_CORRUPT', `${where} is not a deltadisk snapshot state file`, { path });
  if (crc32(b.subarray(0, 28)) !== b.readUInt32LE(28)) throw new DeltaDiskError('CHECKSUM_MISMATCH', `${where}: header checksum mismatch`, { path });
  const version = b.readUInt32LE(8);
  if (version !== VMSN_VERSION) throw new DeltaDiskError('UNSUPPORTED_VERSION', `${where}: version ${version} is not supported`, { path });
  const m = b.readUInt32LE(12);
  const c = b.readUInt32LE(16);
  if (m > MAX_VMSN_METADATA || c > MAX_VMSN_CONFIG) throw new DeltaDiskError('LIMIT_EXCEEDED', `${where}: section lengths exceed the limits`, { path });
  if (b.length < VMSN_HEADER + m + c) throw new DeltaDiskError('TRUNCATED', `${where} ends before its sections`, { path });
  const meta = b.subarray(VMSN_HEADER, VMSN_HEADER + m);
  const config = b.subarray(VMSN_HEADER + m, VMSN_HEADER + m + c);
  if (crc32(meta) !== b.readUInt32LE(20) || crc32(config) !== b.readUInt32LE(24)) {
    throw new DeltaDiskError('CHECKSUM_MISMATCH', `${where}: section checksum mismatch`, { path });
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(meta.toString('utf8'));
  } catch {
    throw new DeltaDiskError('CHAIN_CORRUPT', `${where}: metadata is not JSON`, { path });
  }
  return { metadata: checkMetadata(parsed, where, path), config: Buffer.from(config) };
}

function checkMetadata(x: unknown, where: string, path: string | undefined): VmsnMetadata {
  const bad = (why: string): never => {
    throw new DeltaDiskError('CHAIN_CORRUPT', `${where}: metadata ${why}`, { path });
  };
  if (typeof x !== 'object' || x === null) return bad('is not an object');
  const o = x as Record<string, unknown>;
  if (o.format !== 'deltadisk-vmsn') bad('has the wrong format tag');
  if (!Number.isSafeInteger(o.uid) || (o.uid as number) < 1) bad('has no valid uid');
  for (const k of ['name', 'description', 'created', 'vmx', 'consistency']) if (typeof o[k] !== 'string') bad(`field ${k} is not a string`);
  if (!Array.isArray(o.disks) || o.disks.length > 4096) return bad('disks is not a list');
  const disks = (o.disks as unknown[]).map((d) => {
    const e = d as Record<string, unknown>;
    if (typeof e !== 'object' || e === null || !['node', 'fileName', 'snapshotId', 'snapshotName'].every((k) => typeof e[k] === 'string')) bad('lists a malformed disk');
    return { node: e.node as string, fileName: e.fileName as string, snapshotId: e.snapshotId as string, snapshotName: e.snapshotName as string };
  });
  let memory: VmsnMetadata['memory'] = null;
  if (o.memory !== null) {
    const mem = o.memory as Record<string, unknown>;
    if (typeof mem !== 'object' || typeof mem.file !== 'string' || !Number.isSafeInteger(mem.size)) bad('has a malformed memory entry');
    memory = { file: mem.file as string, size: mem.size as number };
  }
  return { uid: o.uid as number, name: o.name as string, description: o.description as string, created: o.created as string, vmx: o.vmx as string, disks, memory, consistency: o.consistency as string };
}
