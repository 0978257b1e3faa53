/**
 * `stats`: what the backups hold against what the repository stores.
 *
 * Logical bytes are what a restore would produce (file sizes; a disk's size for each
 * point in time); unique bytes are the distinct chunks they reference (zero chunks
 * are never stored); stored bytes are those chunks after compression. The dedup
 * ratio is logical / unique, the compression ratio unique / stored.
 */
import type { Manifest } from '../format/manifest.js';
import { forEachReferencedBlob } from './content-list.js';
import type { Repository } from './repository.js';

export interface RepoStats {
  readonly backups: number;
  readonly logicalBytes: number;
  /** Distinct chunks (and chunk lists) referenced. */
  readonly chunks: number;
  readonly uniqueBytes: number;
  readonly storedBytes: number;
  readonly dedupRatio: number;
  readonly compressionRatio: number;
  /** Repository-wide only: pack files and their bytes, and bytes no backup references. */
  readonly packs?: number;
  readonly packBytes?: number;
  readonly unreferencedBytes?: number;
}

function logicalOf(m: Manifest): number {
  let n = 0;
  for (const e of m.entries) {
    if (e.type === 'file') n += e.size;
    if (e.type === 'chain') n += e.chain.virtualSize * (1 + e.chain.points.length);
  }
  return n;
}

/** Statistics of one backup (`id`) or of the whole repository. */
export async function repositoryStats(repo: Repository, id?: string): Promise<RepoStats> {
  repo.assertOpen();
  const ids = id === undefined ? await repo.backupIds() : [id];
  const manifests: Manifest[] = [];
  for (const x of ids) manifests.push(await repo.loadManifest(x));
  const index = await repo.loadIndex();
  const seen = new Uint8Array(index.entryCount);
  let chunks = 0;
  let unique = 0;
  let stored = 0;
  await forEachReferencedBlob(repo, index, manifests, (h) => {
    const e = index.find(h);
    if (e < 0 || seen[e] === 1) return;
    seen[e] = 1;
    chunks++;
    unique += index.rawLengthOf(e);
    stored += index.storedLengthOf(e);
  });
  const logical = manifests.reduce((a, m) => a + logicalOf(m), 0);
  const base = {
    backups: manifests.length,
    logicalBytes: logical,
    chunks,
    uniqueBytes: unique,
    storedBytes: stored,
    dedupRatio: unique === 0 ? 0 : logical / unique,
    compressionRatio: stored === 0 ? 0 : unique / stored,
  };
  if (id !== undefined) return base;
  const packs = await repo.backend.list('pack');
  let unreferenced = 0;
  for (let e = 0; e < index.entryCount; e++) if (seen[e] !== 1) unreferenced += index.storedLengthOf(e);
  return { ...base, packs: packs.length, packBytes: packs.reduce((a, f) => a + f.size, 0), unreferencedBytes: unreferenced };
}
