/**
 * `diff`: what changed between two backups, entry by entry.
 *
 * Entries are matched by path: `+` added, `-` removed, `M` content modified, `T` type
 * changed, `U` only mode or time changed. For modified contents the bytes of chunks
 * added and removed are counted (a disk's points in time are compared point by point,
 * and points added or removed are listed).
 */
import type { ChunkIndex } from './chunk-index.js';
import type { Content, Entry } from '../format/manifest.js';
import { HASH_SIZE, ZERO_HASH } from '../format/repo-limits.js';
import { unseenPages } from './content-list.js';
import type { Repository } from './repository.js';

export type DiffChange = '+' | '-' | 'M' | 'T' | 'U';

export interface DiffItem {
  readonly path: string;
  readonly change: DiffChange;
  readonly type: string;
  /** For M: bytes of chunks only in the newer backup, and only in the older. */
  readonly bytesAdded?: number;
  readonly bytesRemoved?: number;
  readonly note?: string;
}

export interface DiffResult {
  readonly a: string;
  readonly b: string;
  readonly items: DiffItem[];
  readonly stats: { added: number; removed: number; modified: number; typeChanged: number; metadata: number; bytesAdded: number; bytesRemoved: number };
}

function sameContent(x: Content, y: Content): boolean {
  if (x.count !== y.count || x.size !== y.size || x.chunkSize !== y.chunkSize) return false;
  if (x.hashes !== undefined && y.hashes !== undefined) return x.hashes.equals(y.hashes);
  const lx = x.lists ?? [];
  const ly = y.lists ?? [];
  return lx.length === ly.length && lx.every((l, i) => l.equals(ly[i]!));
}

async function chunkSizes(repo: Repository, index: ChunkIndex, c: Content): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  // Pages seen already add nothing to the map: each list blob is read once.
  for await (const page of unseenPages(repo, index, c, new Set())) {
    for (let at = 0; at < page.length; at += HASH_SIZE) {
      const h = page.subarray(at, at + HASH_SIZE);
      if (h.equals(ZERO_HASH)) continue;
      const id = index.find(h);
      out.set(h.toString('hex'), id < 0 ? 0 : index.rawLengthOf(id));
    }
  }
  return out;
}

async function contentDelta(repo: Repository, index: ChunkIndex, a: Content, b: Content): Promise<{ added: number; removed: number }> {
  const ca = await chunkSizes(repo, index, a);
  const cb = await chunkSizes(repo, index, b);
  let added = 0;
  let removed = 0;
  for (const [h, n] of cb) if (!ca.has(h)) added += n;
  for (const [h, n] of ca) if (!cb.has(h)) removed += n;
  return { added, removed };
}

function metaChanged(a: Entry, b: Entry): boolean {
  return a.mode !== b.mode || Math.abs(a.mtimeMs - b.mtimeMs) >= 1 || (a.type === 'symlink' && b.type === 'symlink' && a.target !== b.target);
}

export async function diffBackups(repo: Repository, idA: string, idB: string): Promise<DiffResult> {
  const ma = await repo.loadManifest(idA);
  const mb = await repo.loadManifest(idB);
  const index = await repo.loadIndex();
  const byPath = new Map(ma.entries.map((e) => [e.path, e]));
  const inB = new Set(mb.entries.map((e) => e.path));
  const items: DiffItem[] = [];
  const stats = { added: 0, removed: 0, modified: 0, typeChanged: 0, metadata: 0, bytesAdded: 0, bytesRemoved: 0 };
  for (const e of ma.entries) {
    if (!inB.has(e.path)) {
      items.push({ path: e.path, change: '-', type: e.type });
      stats.removed++;
    }
  }
  for (const e of mb.entries) {
    const old = byPath.get(e.path);
    if (old === undefined) {
      items.push({ path: e.path, change: '+', type: e.type });
      stats.added++;
      continue;
    }
    if (old.type !== e.type) {
      items.push({ path: e.path, change: 'T', type: e.type, note: `${old.type} → ${e.type}` });
      stats.typeChanged++;
      continue;
    }
    let delta: { added: number; removed: number } | undefined;
    let note: string | undefined;
    if (e.type === 'file' && old.type === 'file' && !sameContent(old.content, e.content)) {
      delta = await contentDelta(repo, index, old.content, e.content);
    }
    if (e.type === 'chain' && old.type === 'chain') {
      const changes: string[] = [];
      let added = 0;
      let removed = 0;
      if (!sameContent(old.chain.capture.content, e.chain.capture.content)) {
        const d = await contentDelta(repo, index, old.chain.capture.content, e.chain.capture.content);
        added += d.added;
        removed += d.removed;
        changes.push('state changed');
      }
      const oldPoints = new Set(old.chain.points.map((p) => p.id));
      const newPoints = new Set(e.chain.points.map((p) => p.id));
      for (const p of e.chain.points) if (!oldPoints.has(p.id)) changes.push(`+snapshot ${p.name}`);
      for (const p of old.chain.points) if (!newPoints.has(p.id)) changes.push(`-snapshot ${p.name}`);
      if (changes.length > 0) {
        delta = { added, removed };
        note = changes.join(', ');
      }
    }
    if (delta !== undefined) {
      items.push({ path: e.path, change: 'M', type: e.type, bytesAdded: delta.added, bytesRemoved: delta.removed, ...(note === undefined ? {} : { note }) });
      stats.modified++;
      stats.bytesAdded += delta.added;
      stats.bytesRemoved += delta.removed;
    } else if (metaChanged(old, e)) {
      items.push({ path: e.path, change: 'U', type: e.type });
      stats.metadata++;
    }
  }
  items.sort((x, y) => (x.path < y.path ? -1 : x.path > y.path ? 1 : 0));
  return { a: ma.id, b: mb.id, items, stats };
}
