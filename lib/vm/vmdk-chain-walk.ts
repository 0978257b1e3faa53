/**
 * Follows a VMDK snapshot chain from a descriptor (the vmx's running leaf, or a
 * snapshot's point-in-time file) down to its base, recording every descriptor and
 * extent in the file set and every defect as a problem.
 *
 * Checked on the way, never guessed: each `parentFileNameHint` and extent name
 * through the VM path guard; each child's parentCID against its parent's CID
 * (VMware refuses such a chain: "the parent virtual disk has been modified"); equal
 * capacity along the chain; the magic of each binary extent against its declared
 * type; flat extents long enough for their sectors; loops (by real path) and depth
 * (at most 255 links). Device-backed disks (RDM, raw devices) are reported and not
 * followed.
 */
import path from 'node:path';
import { isDeltaDiskError } from '../errors.js';
import { decodeSparseExtentHeader, identifyExtent } from './sparse-extent-header.js';
import { isDeviceBacked, NO_PARENT_CID, SECTOR, type VmdkDescriptor } from './vmdk-descriptor.js';
import { readExtentHead, readVmdkFile } from './vmdk-reader.js';
import type { VmFindings } from './vm-findings.js';
import type { VmdkExtentInfo, VmdkLink } from './vm-inventory-types.js';
import { resolveVmReference } from './vm-reference.js';

export const MAX_VMDK_CHAIN = 255;

const EXPECTED_MAGIC: Record<string, string> = { SPARSE: 'kdmv', VMFSSPARSE: 'cowd', SESPARSE: 'sesparse' };

/**
 * Walks from `start` (an already resolved descriptor path). A link walked before
 * (where a snapshot branch meets the running chain) ends the walk: `known` maps
 * the real path of every walked link to the chain from it down to the base.
 * @param leafWritable the start is a running leaf (written while the VM runs);
 *   every other link is a read-only parent
 * @returns the links from `start` down to the base (or as far as the chain is sound)
 */
export async function walkVmdkChain(f: VmFindings, node: string, start: string, known: Map<string, VmdkLink[]>, leafWritable: boolean): Promise<VmdkLink[]> {
  const links: VmdkLink[] = [];
  const seen = new Set<string>();
  let current: string | undefined = start;
  while (current !== undefined) {
    const shared = known.get(current);
    if (shared !== undefined) {
      if (links.length > 0) checkParent(f, node, links[links.length - 1]!, shared[0]!);
      links.push(...shared);
      break;
    }
    if (seen.has(current)) {
      f.problem('CHAIN_LOOP', 'error', `the chain of ${node} loops back to ${f.name(current)}`, { path: current, disk: node });
      break;
    }
    if (links.length >= MAX_VMDK_CHAIN) {
      f.problem('CHAIN_TOO_DEEP', 'error', `the chain of ${node} is deeper than ${MAX_VMDK_CHAIN} links`, { disk: node });
      break;
    }
    seen.add(current);
    const link = await readLink(f, node, current, !(leafWritable && links.length === 0));
    if (link === undefined) break;
    if (links.length > 0) checkParent(f, node, links[links.length - 1]!, link);
    links.push(link);
    current = await nextParent(f, node, link);
  }
  links.forEach((l, i) => {
    if (!known.has(l.path)) known.set(l.path, links.slice(i));
  });
  return links;
}

async function readLink(f: VmFindings, node: string, p: string, immutable: boolean): Promise<VmdkLink | undefined> {
  let d: VmdkDescriptor;
  let embedded: boolean;
  try {
    const file = await readVmdkFile(f.fs, p);
    d = file.descriptor;
    embedded = file.sparseHeader !== undefined;
  } catch (err) {
    if (!isDeltaDiskError(err)) throw err;
    const code = err.code === 'NOT_FOUND' ? 'MISSING_FILE' : 'INVALID_DESCRIPTOR';
    f.problem(code, 'error', `disk ${node}: ${f.name(p)}: ${err.message} [${err.code}]`, { path: p, disk: node });
    return undefined;
  }
  await f.addFile(p, 'disk-descriptor', { disk: node, immutable });
  const extents: VmdkExtentInfo[] = [];
  if (isDeviceBacked(d)) {
    f.problem('UNSUPPORTED_DISK', 'error', `disk ${node}: ${f.name(p)} is backed by a device (${d.createType}), which cannot be backed up as files`, { path: p, disk: node });
  } else {
    for (const e of d.extents) extents.push(await checkExtent(f, node, p, e, immutable));
  }
  return {
    name: f.name(p),
    path: p,
    createType: d.createType,
    cid: d.cid,
    parentCid: d.parentCid,
    parentFileNameHint: d.parentFileNameHint,
    capacity: d.capacity,
    embedded,
    extents,
  };
}

async function checkExtent(f: VmFindings, node: string, descriptor: string, e: VmdkDescriptor['extents'][number], immutable: boolean): Promise<VmdkExtentInfo> {
  const info = { access: e.access, type: e.type, sectors: e.sectors, file: e.file };
  if (e.file === undefined) return { ...info, path: null, size: null };
  const r = await resolveVmReference(f, path.dirname(descriptor), e.file, `extent of ${f.name(descriptor)}`);
  const p = f.resolvedOrReport(r, `disk ${node}: extent`, 'error', node);
  if (p === undefined) return { ...info, path: null, size: null };
  let head: Buffer;
  let size: number;
  try {
    ({ head, size } = await readExtentHead(f.fs, p));
  } catch (err) {
    if (!isDeltaDiskError(err)) throw err;
    f.problem('INVALID_EXTENT', 'error', `disk ${node}: extent ${f.name(p)}: ${err.message}`, { path: p, disk: node });
    return { ...info, path: p, size: null };
  }
  const expected = EXPECTED_MAGIC[e.type];
  if (expected !== undefined && identifyExtent(head) !== expected) {
    f.problem('INVALID_EXTENT', 'error', `disk ${node}: extent ${f.name(p)} is declared ${e.type} but does not start like one`, { path: p, disk: node });
  } else if (e.type === 'SPARSE') {
    try {
      decodeSparseExtentHeader(head, size, `extent ${f.name(p)}`);
    } catch (err) {
      if (!isDeltaDiskError(err)) throw err;
      f.problem('INVALID_EXTENT', 'error', `disk ${node}: ${err.message} [${err.code}]`, { path: p, disk: node });
    }
  } else if ((e.type === 'FLAT' || e.type === 'VMFS') && size < (e.offset + e.sectors) * SECTOR) {
    f.problem('INVALID_EXTENT', 'warning', `disk ${node}: flat extent ${f.name(p)} has ${size} bytes, its ${e.sectors} sectors need ${(e.offset + e.sectors) * SECTOR}`, { path: p, disk: node });
  }
  if (p !== descriptor) await f.addFile(p, 'disk-extent', { disk: node, immutable, size });
  return { ...info, path: p, size };
}

function checkParent(f: VmFindings, node: string, child: VmdkLink, parent: VmdkLink): void {
  if (child.parentCid !== undefined && parent.cid !== undefined && child.parentCid !== parent.cid) {
    f.problem(
      'CID_MISMATCH',
      'error',
      `disk ${node}: ${child.name} was made from content ${child.parentCid}, but its parent ${parent.name} now has content ${parent.cid}: the parent was modified after the child was created`,
      { path: child.path, disk: node },
    );
  }
  if (child.capacity !== parent.capacity) {
    f.problem('CAPACITY_MISMATCH', 'error', `disk ${node}: ${child.name} has ${child.capacity} bytes, its parent ${parent.name} ${parent.capacity}`, { path: child.path, disk: node });
  }
}

async function nextParent(f: VmFindings, node: string, link: VmdkLink): Promise<string | undefined> {
  if (link.parentFileNameHint === undefined) {
    if (link.parentCid !== undefined && link.parentCid !== NO_PARENT_CID) {
      f.problem('MISSING_FILE', 'error', `disk ${node}: ${link.name} has a parent (parentCID ${link.parentCid}) but names none`, { path: link.path, disk: node });
    }
    return undefined;
  }
  const r = await resolveVmReference(f, path.dirname(link.path), link.parentFileNameHint, `parent of ${link.name}`);
  return f.resolvedOrReport(r, `disk ${node}: parent of ${link.name}`, 'error', node);
}
