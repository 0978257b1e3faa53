/**
 * Checking a disk for damage, and repairing what is safe to repair.
 *
 * Findings are of two severities, after qemu-img's: *corrupt* (a structure is
 * damaged or impossible: data may be wrong or unreadable) and *leak* (space or
 * bookkeeping wasted, content unharmed: orphan files, a torn tail past the last
 * valid record, a header lagging behind the descriptor, an unfinished merge).
 *
 * The check opens nothing for writing. `repair` then fixes leaks only (finishes the
 * merge, truncates torn tails, rewrites stale headers, deletes orphans) and, when
 * the descriptor itself is lost or unreadable, rebuilds it from the delta headers
 * (keeping the damaged one aside). It never touches a damaged block: data cannot be
 * guessed, so data damage stays reported.
 */
import path from 'node:path';
import { crc32 } from 'node:zlib';
import { isDeltaDiskError } from '../errors.js';
import type { Descriptor } from '../format/descriptor.js';
import { MAX_RECORD_PAYLOAD } from '../format/limits.js';
import { RecordKind } from '../format/record.js';
import { TEMP_INFIX, atomicReplace, createDurable } from '../io/atomic-replace.js';
import type { FileSystem } from '../io/file-system.js';
import { nodeFileSystem } from '../io/node-file-system.js';
import { resolveReference } from '../io/path-guard.js';
import { readInto } from '../io/positional.js';
import { openRawBase, zeroBase, type BaseImage } from './base-image.js';
import { ChainView } from './chain-view.js';
import { DiskPaths, encodeReadable, readDescriptor, readOpState } from './descriptor-file.js';
import { LayerFile } from './layer-file.js';
import { layersWithPendingParent } from './merge.js';
import { rebuildDescriptor } from './rebuild-descriptor.js';
import { Tree } from './tree.js';

export type FindingKind =
  | 'descriptor'
  | 'operation-state'
  | 'unfinished-operation'
  | 'base'
  | 'layer'
  | 'reference'
  | 'bookmark'
  | 'checksum'
  | 'torn-tail'
  | 'stale-header'
  | 'orphan-file'
  | 'temp-file';

export interface CheckFinding {
  readonly kind: FindingKind;
  readonly severity: 'corrupt' | 'leak';
  readonly message: string;
  readonly path?: string | undefined;
  readonly layer?: string | undefined;
  readonly block?: number | undefined;
  readonly offset?: number | undefined;
}

export interface CheckReport {
  readonly result: 'clean' | 'leaks' | 'corrupt';
  readonly findings: readonly CheckFinding[];
  /** What `repair` fixed (the findings above are those that remain). */
  readonly repaired: readonly CheckFinding[];
  readonly notes: readonly string[];
  readonly layersChecked: number;
  readonly blocksVerified: number;
  readonly bytesVerified: number;
  readonly garbageBytes: number;
}

export interface CheckOptions {
  readonly fs?: FileSystem;
  readonly allowPaths?: readonly string[];
  /** Verify the checksum of every stored block. */
  readonly readData?: boolean;
  /** Fix what is safe to fix (see the module comment). Needs the writer lock. */
  readonly repair?: boolean;
  /** Called with bytes verified, for progress. */
  readonly onProgress?: (bytes: number) => void;
}

/** Opens the disk for writing and repairs every layer's tail and header (supplied by Disk). */
export type LayerRepairer = (descriptorPath: string, fs: FileSystem, allowPaths: readonly string[]) => Promise<void>;

/** Checks at most this many damaged blocks are listed one by one. */
const MAX_CHECKSUM_FINDINGS = 100;

/**
 * Checks the disk at `descriptorPath`.
 * @throws NOT_FOUND when there is no disk at all; UNSUPPORTED_VERSION; LOCKED when
 *   repairing a disk in use. Damage is reported, not thrown.
 */
export async function checkDisk(descriptorPath: string, options: CheckOptions, repairLayers: LayerRepairer): Promise<CheckReport> {
  const fs = options.fs ?? nodeFileSystem;
  const paths = new DiskPaths(descriptorPath);
  const first = await analyse(fs, paths, options);
  if (!options.repair || first.findings.length === 0) return first;
  const repaired = await repair(fs, paths, options, first, repairLayers);
  const after = await analyse(fs, paths, { ...options, readData: options.readData ?? false });
  const still = new Set(after.findings.map((f) => `${f.kind}|${f.message}`));
  return {
    ...after,
    repaired: [...repaired.filter((f) => !still.has(`${f.kind}|${f.message}`))],
    notes: [...first.notes, ...after.notes],
  };
}

interface Analysis extends CheckReport {
  readonly descriptor: Descriptor | undefined;
}

async function analyse(fs: FileSystem, paths: DiskPaths, options: CheckOptions): Promise<Analysis> {
  const findings: CheckFinding[] = [];
  const notes: string[] = [];
  const add = (f: CheckFinding): void => {
    findings.push(f);
  };
  let d: Descriptor | undefined;
  try {
    d = await readDescriptor(fs, paths.descriptor);
  } catch (err) {
    if (!isDeltaDiskError(err) || err.code === 'UNSUPPORTED_VERSION') throw err;
    if (err.code === 'NOT_FOUND') {
      const any = (await fs.readdir(paths.dir).catch(() => [] as string[])).some((n) => paths.layerNumber(n) !== undefined);
      if (!any) throw err;
    }
    add({ kind: 'descriptor', severity: 'corrupt', message: `descriptor: ${err.message}`, path: paths.descriptor });
  }
  const empty = { layersChecked: 0, blocksVerified: 0, bytesVerified: 0, garbageBytes: 0 };
  if (d === undefined) {
    return { result: 'corrupt', findings, repaired: [], notes, descriptor: undefined, ...empty };
  }

  let waived = new Set<string>();
  try {
    const op = await readOpState(fs, paths.opState);
    if (op !== undefined) {
      if (op.diskId !== d.diskId) {
        add({ kind: 'operation-state', severity: 'corrupt', message: `${paths.opState} belongs to another disk`, path: paths.opState });
      } else {
        add({ kind: 'unfinished-operation', severity: 'leak', message: `an interrupted ${op.direction} merge of layer ${op.removed.id} is to be finished`, path: paths.opState });
        waived = new Set(layersWithPendingParent(d, op));
      }
    }
  } catch (err) {
    if (!isDeltaDiskError(err)) throw err;
    add({ kind: 'operation-state', severity: 'corrupt', message: `operation state: ${err.message}`, path: paths.opState });
  }

  let base: BaseImage = zeroBase;
  if (d.base !== null) {
    try {
      const file = await resolveReference(fs, paths.dir, d.base.file, 'base image', options.allowPaths ?? []);
      base = (await openRawBase(fs, file, d.base)).base;
    } catch (err) {
      if (!isDeltaDiskError(err)) throw err;
      add({ kind: 'base', severity: 'corrupt', message: `base image: ${err.message}`, path: err.path });
    }
  }

  const tree = new Tree(d);
  const layers = new Map<string, LayerFile>();
  let garbage = 0;
  let verifiedBlocks = 0;
  let verifiedBytes = 0;
  try {
    for (const entry of d.layers) {
      let layer: LayerFile;
      try {
        layer = await LayerFile.open(
          fs,
          paths.dir,
          entry.file,
          { diskId: d.diskId, layerId: entry.id, blockSize: d.blockSize, virtualSize: d.virtualSize },
          waived.has(entry.id) ? undefined : entry.parent,
          { writable: false },
        );
      } catch (err) {
        if (!isDeltaDiskError(err)) throw err;
        add({ kind: 'layer', severity: 'corrupt', message: `layer ${entry.file}: ${err.message}`, path: path.join(paths.dir, entry.file), layer: entry.id });
        continue;
      }
      layers.set(entry.id, layer);
      garbage += layer.garbageBytes;
      const size = (await layer.handle.stat()).size;
      if (size > layer.logEnd) {
        add({ kind: 'torn-tail', severity: 'leak', message: `${entry.file}: ${size - layer.logEnd} bytes after the last valid record`, path: layer.path, layer: entry.id, offset: layer.logEnd });
      }
      const h = layer.header;
      const snap = tree.snapshotOn(entry.id);
      const parentFile = entry.parent === null ? null : tree.layer(entry.parent).file;
      const stale: string[] = [];
      if (h.parentId !== entry.parent) stale.push('parent');
      if (h.parentFile !== parentFile) stale.push('parent file');
      if (h.sealed !== (entry.id !== d.active)) stale.push('sealed flag');
      if ((h.snapshot?.id ?? null) !== (snap?.id ?? null) || (snap !== undefined && h.snapshot?.name !== snap.name)) stale.push('snapshot tag');
      if (JSON.stringify(h.base) !== JSON.stringify(d.base)) stale.push('base');
      if (stale.length > 0) {
        add({ kind: 'stale-header', severity: 'leak', message: `${entry.file}: header ${stale.join(', ')} behind the descriptor`, path: layer.path, layer: entry.id });
      }
    }

    // Every point in time resolves: one view per leaf and per snapshot.
    const tops = new Set<string>([...d.layers.filter((l) => tree.children(l.id).length === 0).map((l) => l.id), ...d.snapshots.map((s) => s.layer)]);
    for (const top of tops) {
      const chain = tree.path(top).map((l) => layers.get(l.id));
      if (chain.some((l) => l === undefined)) continue; // already reported
      try {
        ChainView.build(base, chain as LayerFile[], d.virtualSize, d.blockSize, { indexHashes: false });
      } catch (err) {
        if (!isDeltaDiskError(err)) throw err;
        add({ kind: 'reference', severity: 'corrupt', message: err.message, path: err.path, layer: err.layer, block: err.block });
      }
    }

    // Every bookmark names rows its layer holds, and its view resolves.
    for (const b of d.snapshots) {
      if (b.rows === undefined) continue;
      const chain = tree.path(b.layer).map((l) => layers.get(l.id));
      if (chain.some((l) => l === undefined)) continue; // already reported
      try {
        ChainView.build(base, chain as LayerFile[], d.virtualSize, d.blockSize, { indexHashes: false, topRows: b.rows });
      } catch (err) {
        if (!isDeltaDiskError(err)) throw err;
        add({ kind: 'bookmark', severity: 'corrupt', message: `bookmark ${JSON.stringify(b.name)}: ${err.message}`, path: err.path, layer: b.layer });
      }
    }

    // Files around the descriptor that nothing names.
    const known = new Set(d.layers.map((l) => l.file));
    const descName = path.basename(paths.descriptor);
    for (const name of await fs.readdir(paths.dir)) {
      const p = path.join(paths.dir, name);
      if (name.startsWith(`${descName}${TEMP_INFIX}`) || name.startsWith(`${descName}.op${TEMP_INFIX}`)) {
        add({ kind: 'temp-file', severity: 'leak', message: `${name}: a temporary file left by an interrupted replacement`, path: p });
        continue;
      }
      const n = paths.layerNumber(name);
      if (n === undefined || known.has(name)) continue;
      add({ kind: 'orphan-file', severity: 'leak', message: `${name}: a delta file no descriptor names`, path: p });
    }

    if (options.readData) {
      let damaged = 0;
      for (const [id, layer] of layers) {
        const r = await verifyLayerData(layer, d.blockSize, options.onProgress);
        verifiedBlocks += r.blocks;
        verifiedBytes += r.bytes;
        for (const bad of r.bad) {
          damaged++;
          if (damaged <= MAX_CHECKSUM_FINDINGS) {
            add({ kind: 'checksum', severity: 'corrupt', message: `${layer.file}: block ${bad.block} fails its checksum`, path: layer.path, layer: id, block: bad.block, offset: bad.offset });
          }
        }
      }
      if (damaged > MAX_CHECKSUM_FINDINGS) notes.push(`${damaged - MAX_CHECKSUM_FINDINGS} more damaged blocks not listed`);
    }
  } finally {
    for (const l of layers.values()) await l.release();
    await base.release();
  }
  const result = findings.some((f) => f.severity === 'corrupt') ? 'corrupt' : findings.length > 0 ? 'leaks' : 'clean';
  return {
    result,
    findings,
    repaired: [],
    notes,
    descriptor: d,
    layersChecked: layers.size,
    blocksVerified: verifiedBlocks,
    bytesVerified: verifiedBytes,
    garbageBytes: garbage,
  };
}

/** Reads every stored block of `layer` in large contiguous reads and checks its CRC. */
async function verifyLayerData(
  layer: LayerFile,
  bs: number,
  onProgress: ((bytes: number) => void) | undefined,
): Promise<{ blocks: number; bytes: number; bad: { block: number; offset: number }[] }> {
  const t = layer.records;
  const rows: number[] = [];
  for (let r = 0; r < t.count; r++) {
    const k = t.kind(r);
    if (k === RecordKind.DATA || k === RecordKind.BLOB) rows.push(r);
  }
  rows.sort((a, b) => t.offset(a) - t.offset(b));
  const bad: { block: number; offset: number }[] = [];
  const maxBlocks = Math.max(1, Math.floor(MAX_RECORD_PAYLOAD / bs));
  let buf = Buffer.allocUnsafe(maxBlocks * bs);
  let i = 0;
  let bytes = 0;
  while (i < rows.length) {
    let n = 1;
    while (i + n < rows.length && n < maxBlocks && t.offset(rows[i + n]!) === t.offset(rows[i]!) + n * bs) n++;
    if (buf.length < n * bs) buf = Buffer.allocUnsafe(n * bs);
    const view = buf.subarray(0, n * bs);
    await readInto(layer.handle, view, t.offset(rows[i]!));
    for (let k = 0; k < n; k++) {
      const row = rows[i + k]!;
      if (crc32(view.subarray(k * bs, (k + 1) * bs)) !== t.crc(row)) bad.push({ block: t.block(row), offset: t.offset(row) });
    }
    bytes += n * bs;
    onProgress?.(n * bs);
    i += n;
  }
  return { blocks: rows.length, bytes, bad };
}

async function repair(
  fs: FileSystem,
  paths: DiskPaths,
  options: CheckOptions,
  found: Analysis,
  repairLayers: LayerRepairer,
): Promise<CheckFinding[]> {
  const repaired: CheckFinding[] = [];
  const descriptorBroken = found.findings.some((f) => f.kind === 'descriptor');
  if (descriptorBroken) {
    const { descriptor, notes, newLayer } = await rebuildDescriptor(fs, paths);
    const bytes = encodeReadable(descriptor, paths.descriptor); // the rebuilt tree must validate
    if (newLayer !== undefined) {
      // Its file before the descriptor naming it (a crash between leaves an unsealed
      // leaf, which the next rebuild takes as the active layer).
      const h = newLayer.header;
      const layer = await LayerFile.create(fs, paths.dir, newLayer.entry.file, {
        diskId: descriptor.diskId,
        layerId: newLayer.entry.id,
        parentId: newLayer.entry.parent,
        parentFile: newLayer.parentFile,
        base: h.base,
        blockSize: h.blockSize,
        virtualSize: h.virtualSize,
      });
      await layer.release();
    }
    const exists = await fs.lstat(paths.descriptor).then(() => true, () => false);
    if (exists) {
      const aside = `${paths.descriptor}.damaged-${new Date().toISOString().replace(/[:.]/g, '-')}`;
      await fs.rename(paths.descriptor, aside);
      await fs.syncDir(paths.dir);
      repaired.push({ kind: 'descriptor', severity: 'corrupt', message: `damaged descriptor kept as ${path.basename(aside)}` });
      await createDurable(fs, paths.descriptor, bytes);
    } else {
      await createDurable(fs, paths.descriptor, bytes).catch(async (err: unknown) => {
        if (isDeltaDiskError(err, 'ALREADY_EXISTS')) await atomicReplace(fs, paths.descriptor, bytes);
        else throw err;
      });
    }
    repaired.push({ kind: 'descriptor', severity: 'corrupt', message: `descriptor rebuilt from ${descriptor.layers.length} delta headers${notes.length > 0 ? ` (${notes.join('; ')})` : ''}` });
  }
  const leaks = found.findings.filter((f) => f.severity === 'leak');
  const dataDamage = found.findings.some((f) => f.severity === 'corrupt' && f.kind !== 'descriptor');
  if (leaks.length === 0 && !descriptorBroken) return repaired;
  if (dataDamage) {
    // Opening for writing would trip over the damage; leaks wait until it is dealt with.
    return repaired;
  }
  // A writable open finishes an interrupted merge, truncates torn tails and deletes
  // orphans; the repairer then reconciles every layer's header and tail.
  await repairLayers(paths.descriptor, fs, options.allowPaths ?? []);
  repaired.push(...leaks);
  return repaired;
}
