/**
 * How a layer's space is used, for `info`.
 *
 * A data record is *in use* when a block maps to it, when it is a BLOB, or when its
 * content is referenced by a deduplicated block anywhere in the disk (one copy per
 * content counts). Everything else that holds data is garbage, reclaimed by
 * compaction, which keeps exactly the records in use.
 */
import { RecordKind } from '../format/record.js';
import type { LayerFile } from './layer-file.js';

export interface LayerSpace {
  readonly dataBlocks: number;
  readonly zeroBlocks: number;
  readonly refBlocks: number;
  readonly logicalBytes: number;
  readonly storedBytes: number;
  readonly dedupSavedBytes: number;
  readonly garbageBytes: number;
}

const hex = (h: Uint8Array): string => Buffer.from(h.buffer, h.byteOffset, h.byteLength).toString('hex');

/** The content hashes that deduplicated blocks of `layers` refer to. */
export function referencedHashes(layers: readonly LayerFile[]): Set<string> {
  const out = new Set<string>();
  for (const layer of layers) {
    const t = layer.records;
    for (let r = 0; r < t.count; r++) if (t.kind(r) === RecordKind.REF) out.add(hex(t.hash(r)));
  }
  return out;
}

export function layerSpace(layer: LayerFile, referenced: ReadonlySet<string>): LayerSpace {
  const bs = layer.blockSize;
  let data = 0;
  let zero = 0;
  let ref = 0;
  layer.map.forEach((_block, kind) => {
    if (kind === RecordKind.DATA) data++;
    else if (kind === RecordKind.ZERO) zero++;
    else if (kind === RecordKind.REF) ref++;
  });
  const t = layer.records;
  const counted = new Set<string>();
  let inUse = 0;
  let stored = 0;
  for (let r = 0; r < t.count; r++) {
    const k = t.kind(r);
    if (k !== RecordKind.DATA && k !== RecordKind.BLOB) continue;
    stored++;
    const mapped = k === RecordKind.DATA && layer.map.tag(t.block(r)) === RecordKind.DATA && layer.map.num(t.block(r)) === r;
    let used = mapped || k === RecordKind.BLOB;
    if (t.hasHash(r)) {
      const h = hex(t.hash(r));
      if (!used && referenced.has(h) && !counted.has(h)) used = true;
      if (used) counted.add(h);
    }
    if (used) inUse++;
  }
  return {
    dataBlocks: data,
    zeroBlocks: zero,
    refBlocks: ref,
    logicalBytes: (data + zero + ref) * bs,
    storedBytes: inUse * bs,
    dedupSavedBytes: ref * bs,
    garbageBytes: (stored - inUse) * bs,
  };
}
