/**
 * `prune`: reclaiming the space of data no backup references, safely while backups
 * run and across crashes.
 *
 * Plan (under the maintenance lock, which excludes other prunes and forgets but not
 * backups): mark every blob the backups reference; packs holding none are condemned;
 * packs mostly unused are repacked (their used blobs copied, verified, into new packs
 * and an index file, durable) and condemned; packs in no index (left by crashed
 * backups) and leftover temporary files are condemned too. The plan is written
 * durably (`plans/prune`); from then on no backup reuses a chunk that lives only in
 * a condemned pack (repository.ts flags them), it stores the chunk again instead.
 * A used blob that fails verification while being repacked keeps its pack, and
 * every other pack holding a copy of it (the copy a check will point readers to).
 * Prune deletes nothing while a manifest cannot be read, a chunk is missing, or a
 * manifest, index file or pack is held by a link or a directory.
 *
 * Finish: wait until every lock present once the plan was durable is gone (those
 * holders may have loaded the index before the plan existed; later ones read it),
 * then read every backup again and spare any condemned pack a backup still needs
 * (one that finished meanwhile may have reused a chunk from it). Then write one
 * consolidated set of index files without the condemned packs, delete the old index
 * files, delete the condemned packs and temporaries, and remove the plan. Every step
 * can be repeated: a crash leaves the plan, and the next prune finishes it first.
 *
 * Aborting (`signal`) stops prune at its next step, pack or poll (INTERRUPTED): before
 * the plan is written nothing is deleted (packs repacked but not yet flushed are
 * discarded); after, the plan stays, as after a crash, and the next prune finishes it.
 */
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { DeltaDiskError, isDeltaDiskError, throwIfAborted } from '../errors.js';
import { decodeIndexFile, encodeIndexFile, indexNameOf, type IndexedPack } from '../format/index-file.js';
import type { Manifest } from '../format/manifest.js';
import { encodePrunePlan, type PrunePlan } from '../format/prune-plan.js';
import { INDEX_PACKS_PER_FILE, MAX_INDEX_FILE } from '../format/repo-limits.js';
import type { ChunkIndex } from './chunk-index.js';
import { forEachReferencedBlob } from './content-list.js';
import { PackWriter } from './pack-writer.js';
import { listLocks } from './repo-lock.js';
import type { Repository } from './repository.js';

export interface PruneOptions {
  readonly dryRun?: boolean;
  /** Repack a pack once at least this fraction of its bytes is unused (default 0.2). */
  readonly repackThreshold?: number;
  /** How long to wait for operations that started before the plan (default 1 hour). */
  readonly maxWaitMs?: number;
  readonly pollMs?: number;
  readonly onNote?: (message: string) => void;
  /** Called before each step (tests use it to stop at a chosen point). */
  readonly onStep?: (step: string) => Promise<void> | void;
  /** Aborting stops prune at its next step, pack or poll (see the file comment). */
  readonly signal?: AbortSignal;
  /**
   * Bytes of packs looked at for repacking (`repack`: every pack the index names,
   * each done once it is copied or passed over), then of condemned packs deleted
   * (`delete`).
   */
  readonly onProgress?: (p: PruneProgress) => void;
}

export interface PruneProgress {
  readonly phase: 'repack' | 'delete';
  readonly done: number;
  readonly total: number;
}

export interface PruneResult {
  readonly dryRun: boolean;
  /** False when deletion was deferred (operations that started earlier still run): run prune again. */
  completed: boolean;
  packsDeleted: number;
  bytesDeleted: number;
  packsRepacked: number;
  /** Bytes of new packs written by repacking. */
  bytesRepacked: number;
  /** Packs spared at the last check because a backup finished meanwhile needs them. */
  packsSpared: number;
  indexFilesWritten: number;
  indexFilesDeleted: number;
  tempsDeleted: number;
  /** Bytes of packs before and after. */
  bytesBefore: number;
  bytesAfter: number;
}

/** Damage to content (as opposed to a failing device, a lost lock …): what makes prune call the repository damaged. */
function isDamage(err: unknown): boolean {
  return isDeltaDiskError(err, 'REPO_CORRUPT') || isDeltaDiskError(err, 'UNSUPPORTED_VERSION') || isDeltaDiskError(err, 'LIMIT_EXCEEDED');
}

async function loadManifests(repo: Repository): Promise<Manifest[]> {
  // A manifest, index file or pack held by a link or a directory is damage no
  // listing shows: a backup whose manifest is a link would look gone, and its data
  // unused.
  for (const kind of ['snapshot', 'index', 'pack'] as const) {
    const odd = await repo.backend.listIrregular(kind);
    if (odd.length > 0) throw new DeltaDiskError('REPO_CORRUPT', `${kind} ${odd[0]} is not a regular file; prune deletes nothing until \`deltadisk check\` is clean`);
  }
  const out: Manifest[] = [];
  for (const id of await repo.backupIds()) {
    try {
      out.push(await repo.loadManifest(id));
    } catch (err) {
      if (isDeltaDiskError(err, 'BACKUP_NOT_FOUND')) continue;
      if (isDamage(err)) throw new DeltaDiskError('REPO_CORRUPT', `backup ${id} cannot be read (${(err as Error).message}); prune deletes nothing until \`deltadisk check\` is clean`);
      throw err;
    }
  }
  return out;
}

/** Marks the entry each referenced blob resolves to; fails when one is missing. */
async function markUsed(repo: Repository, index: ChunkIndex, manifests: readonly Manifest[]): Promise<Uint8Array> {
  const used = new Uint8Array(index.entryCount);
  try {
    await forEachReferencedBlob(repo, index, manifests, (h, what) => {
      const id = index.find(h);
      if (id < 0) throw new DeltaDiskError('REPO_CORRUPT', `${what}: chunk ${h.toString('hex').slice(0, 16)}… is missing`);
      used[id] = 1;
    });
  } catch (err) {
    if (isDeltaDiskError(err, 'REPO_CORRUPT') || isDeltaDiskError(err, 'NOT_FOUND')) {
      throw new DeltaDiskError('REPO_CORRUPT', `the repository is damaged (${err.message}); prune deletes nothing until \`deltadisk check\` is clean`);
    }
    throw err;
  }
  return used;
}

function emptyResult(dryRun: boolean): PruneResult {
  return { dryRun, completed: true, packsDeleted: 0, bytesDeleted: 0, packsRepacked: 0, bytesRepacked: 0, packsSpared: 0, indexFilesWritten: 0, indexFilesDeleted: 0, tempsDeleted: 0, bytesBefore: 0, bytesAfter: 0 };
}

export async function prune(repo: Repository, options: PruneOptions = {}): Promise<PruneResult> {
  const dryRun = options.dryRun === true;
  if (!dryRun) repo.assertLocked('maintenance', 'exclusive');
  const threshold = options.repackThreshold ?? 0.2;
  if (!(threshold > 0 && threshold <= 1)) throw new DeltaDiskError('INVALID_ARGUMENT', 'repackThreshold is a fraction in (0, 1]');
  const result = emptyResult(dryRun);
  const listPacks = async (): Promise<Map<string, number>> => new Map((await repo.backend.list('pack')).map((f) => [f.name, f.size]));
  result.bytesBefore = [...(await listPacks()).values()].reduce((a, b) => a + b, 0);
  let planned = false;
  const checkpoint = (): void =>
    throwIfAborted(options.signal, planned ? 'the prune was interrupted; its plan stays, and the next prune finishes it' : 'the prune was interrupted before it deleted anything');
  const step = async (s: string): Promise<void> => {
    checkpoint();
    await options.onStep?.(s);
    checkpoint();
  };

  // A plan that cannot be read is dropped: the plan made below is worked out from
  // what the repository holds, and waits out every operation under way, whatever
  // the old plan said (it mattered only to finish that prune's deletions).
  let pending: Awaited<ReturnType<Repository['readPlan']>>;
  let damagedPlan = false;
  try {
    pending = await repo.readPlan();
  } catch (err) {
    if (!isDeltaDiskError(err, 'REPO_CORRUPT')) throw err;
    options.onNote?.(`replacing a damaged prune plan: ${err.message}`);
    damagedPlan = true;
  }
  if (pending !== undefined && !dryRun) {
    options.onNote?.(`finishing the prune planned ${pending.created}`);
    planned = true;
    await finish(repo, pending, options, result, step, checkpoint);
    if (!result.completed) return result;
    planned = false;
  }

  // Plan. Readers go the other way from writers: backups, then the index, then the
  // packs (a pack an index names was durable before the index was written).
  await step('plan');
  const manifests = await loadManifests(repo);
  const index = await repo.loadIndex({ ignoreDamagedPlan: true });
  const sizes = await listPacks();
  const used = await markUsed(repo, index, manifests);
  const condemned: string[] = [];
  // Used blobs found damaged while repacking, by pack: their other copies are spared below.
  const damagedBlobs: { pack: number; id: number }[] = [];
  const writer = new PackWriter(repo.backend, index, { packSize: repo.config.packSize, dryRun });
  try {
    await repack();
  } catch (err) {
    // Nothing is left open or half written behind a failed prune (its files are temporaries).
    await writer.abort();
    throw err;
  }
  let flushed = false;
  async function repack(): Promise<void> {
    const copied = new Set<string>();
    const existing = index.packCount; // the repacked packs are added after these
    let allBytes = 0;
    for (let p = 0; p < existing; p++) allBytes += sizes.get(index.packName(p)) ?? 0;
    let looked = 0;
    for (let p = 0; p < existing; p++) {
      checkpoint();
      const name = index.packName(p);
      options.onProgress?.({ phase: 'repack', done: looked, total: allBytes });
      looked += sizes.get(name) ?? 0;
      const { first, count } = index.packEntries(p);
      let total = 0;
      let inUse = 0;
      for (let id = first; id < first + count; id++) {
        total += index.storedLengthOf(id);
        if (used[id] === 1) inUse += index.storedLengthOf(id);
      }
      if (!sizes.has(name)) {
        if (inUse > 0) throw new DeltaDiskError('REPO_CORRUPT', `pack ${name} is missing but backups need it; prune deletes nothing until \`deltadisk check\` is clean`);
        condemned.push(name); // an index entry pointing nowhere: dropped from the index
        continue;
      }
      if (inUse === 0) {
        condemned.push(name);
        continue;
      }
      if ((total - inUse) / total < threshold) continue;
      // Repack: copy the used blobs (verified first) into new packs. A pack with a
      // damaged or truncated blob still in use stays as it is: check reports it.
      // Every used blob is verified even after one failed: each damaged one's other
      // copies are spared below, not only the first one's.
      const blobs: { id: number; stored: Buffer }[] = [];
      let damaged = false;
      for (let id = first; id < first + count; id++) {
        if (used[id] !== 1 || copied.has(index.hashOf(id).toString('hex'))) continue;
        try {
          const stored = await repo.backend.readRange('pack', name, index.offsetOf(id), index.storedLengthOf(id));
          await repo.decodeBlob(index, id, stored);
          if (!damaged) blobs.push({ id, stored });
        } catch (err) {
          // Damaged (a blob that does not decode) or cut short: the same for prune.
          if (!isDeltaDiskError(err, 'REPO_CORRUPT') && !isDeltaDiskError(err, 'TRUNCATED')) throw err;
          options.onNote?.(`not repacking pack ${name}: ${err.message}`);
          damagedBlobs.push({ pack: p, id });
          damaged = true;
        }
      }
      if (damaged) continue;
      for (const { id, stored } of blobs) {
        copied.add(index.hashOf(id).toString('hex'));
        await writer.copy(Buffer.from(index.hashOf(id)), stored, index.rawLengthOf(id), index.kindOf(id), index.compressionOf(id));
      }
      condemned.push(name);
      result.packsRepacked++;
    }
    if (existing > 0) options.onProgress?.({ phase: 'repack', done: allBytes, total: allBytes });
  }
  for (const name of sizes.keys()) if (index.packId(name) === undefined) condemned.push(name);
  // A used blob that failed verification may have another copy, in a pack no reader
  // prefers (so unused, and condemned above): that copy is what a check will point
  // readers to, and deleting it would turn damage that heals into loss. Every pack
  // holding one is spared.
  for (const { pack, id } of damagedBlobs) {
    for (const e of index.entriesWithHash(index.hashOf(id))) {
      const other = index.packName(index.packOf(e));
      const at = condemned.indexOf(other);
      if (index.packOf(e) === pack || at < 0) continue;
      condemned.splice(at, 1);
      options.onNote?.(`keeping pack ${other}: it holds another copy of a damaged blob`);
    }
  }
  const temps = await repo.backend.listTemps();
  if (condemned.length === 0 && temps.length === 0) {
    if (damagedPlan && !dryRun) await repo.backend.remove('plan', 'prune');
    result.bytesAfter = result.bytesBefore;
    return result;
  }
  try {
    await step('repack');
    await writer.flush();
    flushed = true;
  } finally {
    // Stopped before the repacked packs were flushed: they are dropped, not left as temporaries.
    if (!flushed) await writer.abort();
  }
  result.bytesRepacked = writer.stats.packBytes;
  result.indexFilesWritten += writer.stats.indexFiles;
  const plan: PrunePlan = { id: randomBytes(16).toString('hex'), created: new Date().toISOString(), condemned, temps };
  if (dryRun) {
    for (const n of condemned) {
      if (sizes.has(n)) {
        result.packsDeleted++;
        result.bytesDeleted += sizes.get(n)!;
      }
    }
    result.tempsDeleted = temps.length;
    result.bytesAfter = result.bytesBefore - result.bytesDeleted + result.bytesRepacked;
    return result;
  }
  await step('write-plan');
  await repo.lock!.assertValid();
  await repo.backend.write('plan', 'prune', [encodePrunePlan(plan)], 'replace');
  planned = true;
  await finish(repo, plan, options, result, step, checkpoint);
  return result;
}

async function finish(
  repo: Repository,
  plan: PrunePlan,
  options: PruneOptions,
  result: PruneResult,
  step: (s: string) => Promise<void>,
  checkpoint: () => void,
): Promise<void> {
  // 1. Wait for every operation that may have loaded the index before the plan existed.
  await step('wait');
  const own = repo.lock?.token;
  const waiting = (await listLocks(repo.backend, own)).filter((l) => l.state === 'live' || l.state === 'invalid').map((l) => l.name);
  const deadline = Date.now() + (options.maxWaitMs ?? 3_600_000);
  let noted = false;
  for (;;) {
    const now = new Map((await listLocks(repo.backend)).map((l) => [l.name, l.state]));
    const still = waiting.filter((n) => now.get(n) === 'live' || now.get(n) === 'invalid');
    if (still.length === 0) break;
    if (Date.now() >= deadline) {
      options.onNote?.(`${still.length} operation(s) that started before this prune still run; deletion deferred: run prune again later`);
      result.completed = false;
      return;
    }
    if (!noted) options.onNote?.(`waiting for ${still.length} operation(s) that started before this prune`);
    noted = true;
    // An abort ends the pause at once; the next step's checkpoint reports it.
    await sleep(options.pollMs ?? 1000, undefined, options.signal === undefined ? {} : { signal: options.signal }).catch(() => undefined);
    checkpoint();
  }

  // 2. Spare what a backup finished meanwhile needs.
  await step('recheck');
  const manifests = await loadManifests(repo);
  const index = await repo.loadIndex();
  const condemned = new Set(plan.condemned);
  const used = await markUsed(repo, index, manifests);
  for (let id = 0; id < index.entryCount; id++) {
    const name = index.packName(index.packOf(id));
    if (used[id] === 1 && condemned.delete(name)) result.packsSpared++;
  }

  // 3. One consolidated index without the condemned packs, durable before the old goes.
  await step('write-index');
  const oldFiles = (await repo.backend.list('index')).map((f) => f.name);
  const keep = new Map<string, IndexedPack>();
  for (const name of oldFiles) {
    let packs: IndexedPack[];
    try {
      packs = decodeIndexFile(await repo.backend.read('index', name, MAX_INDEX_FILE), name);
    } catch (err) {
      if (isDeltaDiskError(err, 'NOT_FOUND')) continue;
      if (!isDamage(err)) throw err;
      throw new DeltaDiskError('REPO_CORRUPT', `index file ${name} cannot be read (${(err as Error).message}); prune deletes nothing until \`deltadisk check\` is clean`);
    }
    for (const p of packs) if (!condemned.has(p.name)) keep.set(p.name, p);
  }
  const list = [...keep.values()].sort((a, b) => (a.name < b.name ? -1 : 1));
  const written = new Set<string>();
  for (let i = 0; i < list.length; i += INDEX_PACKS_PER_FILE) {
    const bytes = encodeIndexFile(list.slice(i, i + INDEX_PACKS_PER_FILE));
    const name = indexNameOf(bytes);
    await repo.backend.write('index', name, [bytes], 'replace');
    written.add(name);
    result.indexFilesWritten++;
  }

  // 4. Delete: old index files, then the packs no index names any more, then temporaries.
  const sizes = new Map((await repo.backend.list('pack')).map((f) => [f.name, f.size]));
  await step('delete');
  await repo.lock!.assertValid();
  for (const name of oldFiles) {
    if (!written.has(name) && (await repo.backend.remove('index', name))) result.indexFilesDeleted++;
  }
  const total = [...condemned].reduce((a, n) => a + (sizes.get(n) ?? 0), 0);
  let done = 0;
  for (const name of condemned) {
    options.onProgress?.({ phase: 'delete', done, total });
    await step('delete-pack');
    if (await repo.backend.remove('pack', name)) {
      result.packsDeleted++;
      result.bytesDeleted += sizes.get(name) ?? 0;
    }
    done += sizes.get(name) ?? 0;
    await repo.backend.remove('damage', name);
  }
  if (condemned.size > 0) options.onProgress?.({ phase: 'delete', done, total });
  for (const t of plan.temps) {
    await repo.backend.removeTemp(t).catch(() => undefined);
    result.tempsDeleted++;
  }
  await step('remove-plan');
  await repo.backend.remove('plan', 'prune');
  result.bytesAfter = (await repo.backend.list('pack')).reduce((a, f) => a + f.size, 0);
}
