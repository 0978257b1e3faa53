/**
 * Backing up a disk that is one of our chains.
 *
 * The capture point is a bookmark (Disk.bookmark), `deltadisk-backup-<backup id>`,
 * taken the moment the disk is reached (one descriptor replacement) and read at
 * leisure; anchors taken as snapshots by earlier versions serve the same way. When
 * the latest good backup of the same disk (same disk id) came from an anchor that
 * still exists, only the chunks holding blocks changed since (`Disk.changedBlocks`,
 * from the layers themselves, so the change map survives restarts) are read; the
 * rest reuse that backup's chunk list. Otherwise, or when a reused chunk is no longer usable, the disk
 * is read (deduplicated). Once the new backup is published, this repository's older
 * anchors are deleted, so a disk carries one anchor per repository between backups;
 * if the backup fails, its own anchor is deleted instead.
 *
 * Optionally the disk's own snapshots are backed up too (`chainSnapshots`), each read
 * relative to the capture point, or reused whole from the previous backup when it
 * holds the same snapshot (snapshots never change).
 */
import type { DiskReader } from '../chain/disk-reader.js';
import { Disk, type OpenDiskOptions, type SnapshotInfo } from '../chain/disk.js';
import { DeltaDiskError } from '../errors.js';
import type { ChainPoint, Content, Entry } from '../format/manifest.js';
import { CHAIN_MIN_CHUNK, HASH_SIZE, ZERO_HASH } from '../format/repo-limits.js';
import type { FileStat, FileSystem } from '../io/file-system.js';
import { readUpTo } from '../io/positional.js';
import type { BackupSession } from './backup-session.js';
import { changedChunks, readChainPoint } from './chain-reader.js';
import { contentPages } from './content-list.js';

export const ANCHOR_PREFIX = 'deltadisk-backup-';
/** Snapshots deltadisk takes for its own use (backup anchors, VM capture points): never backed up as the disk's own. */
const INTERNAL_PREFIXES = [ANCHOR_PREFIX, 'deltadisk-capture-'];

/** True when `p` starts like a chain descriptor. */
export async function looksLikeChain(fs: FileSystem, p: string): Promise<boolean> {
  try {
    const h = await fs.open(p, 'read');
    try {
      const head = (await readUpTo(h, 0, 256)).toString('utf8');
      return /^\s*\{\s*"format"\s*:\s*"deltadisk-chain"/.test(head);
    } finally {
      await h.close();
    }
  } catch {
    return false;
  }
}

/** The files of a directory that belong to the chain `descriptor` (deltas, lock, state, temporaries). */
export function chainMemberNames(descriptor: string, names: readonly string[]): string[] {
  const stem = descriptor.slice(0, -'.chain'.length).replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const esc = descriptor.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const re = new RegExp(`^(${stem}-\\d{6,12}\\.delta|${esc}\\.(lock|op)|${esc}(\\.op|\\.lock)?\\.tmp-.*)$`);
  return names.filter((n) => re.test(n));
}

export function chainChunkSize(blockSize: number): number {
  return Math.max(blockSize, CHAIN_MIN_CHUNK);
}

function anchorDescription(repoId: string): string {
  return `deltadisk backup anchor (repository ${repoId})`;
}

function selectSnapshots(all: readonly SnapshotInfo[], wanted: 'none' | 'all' | readonly string[]): SnapshotInfo[] {
  const user = all.filter((x) => !INTERNAL_PREFIXES.some((p) => x.name.startsWith(p)));
  if (wanted === 'none') return [];
  if (wanted === 'all') return user;
  for (const name of wanted) {
    if (!user.some((x) => x.name === name)) throw new DeltaDiskError('SNAPSHOT_NOT_FOUND', `the disk has no snapshot named ${JSON.stringify(name)}`);
  }
  return user.filter((x) => wanted.includes(x.name));
}

/** The nearest selected snapshot at or above `start` in the tree. */
function nearestSelected(all: readonly SnapshotInfo[], start: string | null, selected: ReadonlySet<string>): string | null {
  const byId = new Map(all.map((x) => [x.id, x]));
  for (let at = start, steps = 0; at !== null && steps <= all.length; steps++) {
    if (selected.has(at)) return at;
    at = byId.get(at)?.parent ?? null;
  }
  return null;
}

async function allUsable(s: BackupSession, c: Content): Promise<boolean> {
  try {
    for await (const page of contentPages(s.repo, s.index, c)) {
      for (let at = 0; at < page.length; at += HASH_SIZE) {
        const h = page.subarray(at, at + HASH_SIZE);
        if (!h.equals(ZERO_HASH) && s.index.findUsable(h) < 0) return false;
      }
    }
    return true;
  } catch {
    return false;
  }
}

/**
 * Where a chain backup takes its capture point: by default it takes its own anchor
 * snapshot (and deletes the older ones of this repository once published); a caller
 * that captured the disk already (`vm backup`, all disks of a VM at one instant)
 * names that snapshot instead and owns it: the disk is then only read.
 */
export interface ChainCapturePoint {
  readonly snapshot: string;
  /** The disk, open already (the capture's, read-only): read through it, and not closed here. */
  readonly disk?: Disk | undefined;
}

/** Backs up the chain disk at `abs` and returns its entry (the caller adds it: disks read together are added in order). */
export async function backupChain(s: BackupSession, abs: string, entryPath: string, st: FileStat, given?: ChainCapturePoint): Promise<Entry> {
  const openOptions: OpenDiskOptions = {
    readOnly: s.dryRun || given !== undefined,
    // A backup keeps what it reads: a block that fails its CRC must stop it, not be stored.
    verifyReads: true,
    ...(s.options.allowPaths === undefined ? {} : { allowPaths: s.options.allowPaths }),
    ...(s.options.sourceFs === undefined ? {} : { fs: s.options.sourceFs }),
  };
  const held = given?.disk;
  const disk = held ?? (await Disk.open(abs, openOptions));
  if (held === undefined) s.cleanup.push(() => disk.close());
  // A backup keeps what it reads (on a disk opened here, verifyReads says so too).
  const reading = { verifyReads: true };
  // The repository's side of finding the base, while the disk takes its anchor.
  void s.prefetchPreviousChains();
  const readers: DiskReader[] = [];
  s.cleanup.unshift(async () => {
    for (const r of readers) await r.close().catch(() => undefined);
  });
  const repoId = s.repo.config.id;
  const anchorName = `${ANCHOR_PREFIX}${s.id}`;
  const diskId = disk.descriptor.diskId;
  const cs = chainChunkSize(disk.blockSize);
  const n = Math.ceil(disk.virtualSize / cs);

  let anchor: SnapshotInfo | undefined;
  let capture: DiskReader;
  if (given !== undefined) {
    anchor = disk.snapshots().find((x) => x.name === given.snapshot);
    if (anchor === undefined) throw new DeltaDiskError('SNAPSHOT_NOT_FOUND', `${abs} has no snapshot ${given.snapshot} to back up`, { path: abs });
    capture = await disk.openSnapshot(given.snapshot, reading);
    readers.push(capture);
  } else if (s.dryRun) {
    capture = disk.currentReader();
  } else {
    // A bookmark: one descriptor replacement, and deleting it later merges nothing.
    anchor = await disk.bookmark(anchorName, anchorDescription(repoId));
    s.onAbort.push(() => disk.deleteSnapshot(anchorName));
    capture = await disk.openSnapshot(anchorName, reading);
    readers.push(capture);
  }
  const all = disk.snapshots();

  // The base: the latest good backup of this disk whose anchor is still in the chain.
  const prev = await s.previousChain(diskId);
  let base: { backupId: string; content: Content; changed: Uint8Array; usable: boolean } | undefined;
  if (prev !== undefined && anchor !== undefined) {
    const pc = prev.entry.chain.capture;
    const present = all.some((x) => x.name === pc.name && x.id === pc.id);
    if (present && prev.entry.chain.virtualSize === disk.virtualSize && pc.content.chunkSize === cs && pc.content.count === n) {
      const blocks = await disk.changedBlocks(pc.name, anchor.name);
      base = { backupId: prev.backupId, content: pc.content, changed: changedChunks(blocks, disk.blockSize, cs, n), usable: s.repo.vouchesFor(s.index, prev.backupId) };
    }
  }
  const label = abs;
  const captureContent = await readChainPoint(s, capture, {
    chunkSize: cs,
    ...(base === undefined ? {} : { base: { content: base.content, changed: base.changed, usable: base.usable } }),
  }, label);
  s.summary.bytes += disk.virtualSize;

  // The disk's own snapshots, if asked for.
  const selected = selectSnapshots(all, s.options.chainSnapshots ?? 'none');
  const selectedIds = new Set(selected.map((x) => x.id));
  const points: ChainPoint[] = [];
  let flushed = false;
  for (const snap of selected) {
    let content: Content | undefined;
    const old = prev?.entry.chain.points.find((p) => p.id === snap.id);
    if (old !== undefined && old.content.chunkSize === cs && old.content.count === n && (await allUsable(s, old.content))) {
      content = old.content;
      s.progress(label, disk.virtualSize, 0);
    } else {
      const reader = await disk.openSnapshot(snap.name, reading);
      readers.push(reader);
      let relative: { content: Content; changed: Uint8Array } | undefined;
      if (!s.dryRun) {
        // The capture's chunk lists must be durable before they can be read back.
        if (!flushed) await s.writer.flush();
        flushed = true;
        relative = { content: captureContent, changed: changedChunks(await disk.changedBlocks(snap.name, anchor!.name), disk.blockSize, cs, n) };
      }
      content = await readChainPoint(s, reader, { chunkSize: cs, ...(relative === undefined ? {} : { base: relative }) }, label);
    }
    points.push({
      id: snap.id,
      name: snap.name,
      description: snap.description,
      created: snap.created,
      parent: nearestSelected(all, snap.parent, selectedIds),
      content,
    });
    s.summary.bytes += disk.virtualSize;
  }

  const current = all.find((x) => x.current);
  const entry: Entry = {
    type: 'chain',
    path: entryPath,
    mode: st.mode & 0o7777,
    mtimeMs: st.mtimeMs,
    chain: {
      diskId,
      virtualSize: disk.virtualSize,
      blockSize: disk.blockSize,
      dedup: disk.dedup,
      base: base?.backupId ?? null,
      capture: {
        id: anchor?.id ?? 'current',
        name: anchor?.name ?? 'current',
        description: '',
        created: anchor?.created ?? new Date().toISOString(),
        parent: anchor !== undefined ? nearestSelected(all, anchor.parent, selectedIds) : nearestSelected(all, current?.id ?? null, selectedIds),
        content: captureContent,
      },
      points,
    },
  };

  if (anchor !== undefined && given === undefined) {
    s.afterCommit.push(async () => {
      for (const x of disk.snapshots()) {
        if (x.name !== anchorName && x.name.startsWith(ANCHOR_PREFIX) && x.description === anchorDescription(repoId)) await disk.deleteSnapshot(x.name);
      }
    });
  }
  return entry;
}
