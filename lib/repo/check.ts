/**
 * Checking a repository: structure always, data on request.
 *
 * Structure: every index file decodes; every pack an index lists exists with the
 * size it says and a header (trailer) that hashes to its name; every backup decodes
 * and every chunk it names (and every chunk list) is in the index, in a pack that is
 * there; a manifest, index file, pack or plan held by a link or a directory is
 * damage (listings leave such names out, so it is looked for). With `readData`, every blob of every pack (or of the packs in subset n/t,
 * chosen by pack name, so t runs cover the repository) is read, decompressed and
 * hashed. Problems are errors (data a backup needs is missing or damaged, or the
 * index lies) or leaks (unreferenced packs or chunks, leftover temporary files:
 * space that `prune` reclaims, no harm to any backup).
 *
 * Damaged or missing packs get a damage record (damaged/<pack>): from then on no
 * backup deduplicates against their chunks, so the next backup stores them again and
 * readers prefer the new copies. Backups found damaged get a verification record
 * (verify/<id>), which keeps them from being the base of an incremental backup. A
 * later full `--read-data` check removes the records that no longer hold.
 */
import { DeltaDiskError, isDeltaDiskError } from '../errors.js';
import { DIRECT_ALIGN } from '../io/aligned-buffer.js';
import type { Content, Manifest } from '../format/manifest.js';
import { decodePackTail, decodePackTrailer, packNameOf, PACK_TRAILER_SIZE } from '../format/pack-header.js';
import { HASH_SIZE, ZERO_HASH } from '../format/repo-limits.js';
import { encodeDamageRecord } from '../format/damage-record.js';
import { encodeVerifyRecord } from '../format/verify-record.js';
import { readLeased, type LeasedBytes, type RepoFileKind } from './backend.js';
import type { ChunkIndex } from './chunk-index.js';
import { listPage, listPageKey } from './content-list.js';
import type { Repository } from './repository.js';

export type ProblemKind =
  | 'damaged-index'
  | 'dangling-index-entry'
  | 'missing-pack'
  | 'damaged-pack'
  | 'damaged-chunk'
  | 'damaged-manifest'
  | 'damaged-plan'
  | 'missing-chunk'
  | 'unindexed-pack'
  | 'unused-data'
  | 'temp-file';

/** Kinds of file whose names check looks for held by links or directories, and how each is reported. */
const IRREGULAR: readonly (readonly [RepoFileKind, ProblemKind, string])[] = [
  ['snapshot', 'damaged-manifest', 'backup'],
  ['index', 'damaged-index', 'index file'],
  ['pack', 'damaged-pack', 'pack'],
  ['plan', 'damaged-plan', 'prune plan'],
];

const LEAKS: ReadonlySet<ProblemKind> = new Set(['unindexed-pack', 'unused-data', 'temp-file']);

export interface CheckProblem {
  readonly kind: ProblemKind;
  readonly severity: 'error' | 'leak';
  readonly message: string;
  readonly pack?: string;
  readonly backup?: string;
}

export interface CheckOptions {
  /** Read and hash every blob (or those of subset `n` of `t` when given). */
  readonly readData?: boolean;
  readonly subset?: { readonly n: number; readonly t: number };
  /** Write (and clear) verification records; default true. */
  readonly record?: boolean;
  readonly onProblem?: (p: CheckProblem) => void;
  readonly onProgress?: (p: { phase: string; done: number; total: number }) => void;
}

export interface CheckReport {
  readonly errors: CheckProblem[];
  readonly leaks: CheckProblem[];
  readonly failedBackups: string[];
  readonly stats: { indexFiles: number; packs: number; backups: number; chunks: number; packsRead: number; bytesRead: number; unusedBytes: number };
}

/** Which packs of subset `n` of `t` (1-based) a `--read-data-subset n/t` reads. */
export function inSubset(packName: string, n: number, t: number): boolean {
  return Number.parseInt(packName.slice(0, 8), 16) % t === n - 1;
}

export async function checkRepository(repo: Repository, options: CheckOptions = {}): Promise<CheckReport> {
  repo.assertOpen();
  const errors: CheckProblem[] = [];
  const leaks: CheckProblem[] = [];
  const report = (kind: ProblemKind, message: string, extra: { pack?: string; backup?: string } = {}): void => {
    const p: CheckProblem = { kind, severity: LEAKS.has(kind) ? 'leak' : 'error', message, ...extra };
    (p.severity === 'leak' ? leaks : errors).push(p);
    options.onProblem?.(p);
  };
  const stats = { indexFiles: 0, packs: 0, backups: 0, chunks: 0, packsRead: 0, bytesRead: 0, unusedBytes: 0 };
  // A damaged prune plan is reported, not thrown: the rest of the check still runs
  // (then without knowing which packs a prune had condemned), and prune replaces it.
  let plan: Awaited<ReturnType<Repository['readPlan']>>;
  try {
    plan = await repo.readPlan();
  } catch (err) {
    if (!isDeltaDiskError(err, 'REPO_CORRUPT')) throw err;
    report('damaged-plan', err.message);
  }
  const condemned = new Set(plan?.condemned ?? []);

  // 1. Manifests first (readers go the other way from writers), then the index.
  const manifests: Manifest[] = [];
  for (const id of await repo.backupIds()) {
    try {
      manifests.push(await repo.loadManifest(id));
    } catch (err) {
      if (isDeltaDiskError(err, 'BACKUP_NOT_FOUND')) continue;
      if (!isDeltaDiskError(err)) throw err;
      report('damaged-manifest', `backup ${id} cannot be read: ${err.message}`, { backup: id });
    }
  }
  stats.backups = manifests.length;
  // A name of the repository held by a link or a directory was never written by
  // one: listings leave it out, so it is reported here, or a manifest replaced so
  // would be a backup that vanished without a word (and its data a mere leak).
  for (const [kind, problem, what] of IRREGULAR) {
    for (const name of await repo.backend.listIrregular(kind)) {
      report(problem, `${what} ${name} is not a regular file`, kind === 'snapshot' ? { backup: name } : kind === 'pack' ? { pack: name } : {});
    }
  }
  stats.indexFiles = (await repo.backend.list('index')).length;
  const index = await repo.loadIndex({ onDamaged: (name, err) => report('damaged-index', `index file ${name} is damaged: ${err.message}`), ignoreDamagedPlan: true });
  stats.chunks = index.entryCount;

  // 2. Packs: present, right size, header intact.
  const stored = new Map((await repo.backend.list('pack')).map((f) => [f.name, f.size]));
  stats.packs = stored.size;
  const unusable = new Set<number>(); // pack ids whose blobs cannot be served
  const damage = new Map<string, { reason: string; blobs: string[] }>();
  for (let p = 0; p < index.packCount; p++) {
    const name = index.packName(p);
    const size = stored.get(name);
    if (size === undefined) {
      unusable.add(p);
      if (!condemned.has(name)) {
        report('dangling-index-entry', `the index lists pack ${name}, which does not exist (${index.packEntries(p).count} entries point nowhere)`, { pack: name });
        damage.set(name, { reason: 'missing', blobs: [] });
      }
      continue;
    }
    const problem = await packHeaderProblem(repo, index, p, size);
    if (problem !== undefined) {
      unusable.add(p);
      report('damaged-pack', `pack ${name} ${problem}`, { pack: name });
      damage.set(name, { reason: problem, blobs: [] });
    }
  }
  for (const [name] of stored) {
    if (index.packId(name) === undefined && !condemned.has(name)) report('unindexed-pack', `pack ${name} is in no index (left by an interrupted backup; prune removes it)`, { pack: name });
  }

  // 3. Data, on request.
  const badEntries = new Set<number>();
  const readWhole = new Set<string>(); // packs read in full without damage
  if (options.readData) {
    const ids = [...Array(index.packCount).keys()].filter((p) => !unusable.has(p) && (options.subset === undefined || inSubset(index.packName(p), options.subset.n, options.subset.t)));
    let done = 0;
    for (const p of ids) {
      options.onProgress?.({ phase: 'read-data', done: done++, total: ids.length });
      stats.packsRead++;
      const name = index.packName(p);
      const bad = await readPackData(repo, index, p, (n) => (stats.bytesRead += n));
      if (bad.length === 0) readWhole.add(name);
      for (const id of bad) {
        badEntries.add(id);
        report('damaged-chunk', `blob ${index.hashOf(id).toString('hex').slice(0, 16)}… of pack ${name} does not match its hash`, { pack: name });
      }
      if (bad.length > 0) damage.set(name, { reason: `${bad.length} blob(s) do not match their hashes`, blobs: bad.map((id) => index.hashOf(id).toString('hex')) });
    }
  }

  // 4. Every backup's chunks are there.
  const used = new Uint8Array(index.entryCount);
  const checkedLists = new Set<string>();
  const failedBackups: string[] = [];
  const passed: string[] = [];
  const missingNeeded = new Map<string, Set<string>>(); // pack → backups needing it
  const healthy = (id: number): boolean => !unusable.has(index.packOf(id)) && !badEntries.has(id);
  // For each hash stored somewhere unhealthy, a healthy copy (an entry id) if there
  // is one: found in one pass over the index, the first time it is asked for. A
  // scan per chunk (ChunkIndex.entriesWithHash) made a lost pack directory cost
  // ~3 ms per reference to its chunks in an index of a million entries: hours.
  let healthyCopies: Map<string, number> | undefined;
  const healthyCopyOf = (h: Buffer): number | undefined => {
    if (healthyCopies === undefined) {
      const wanted = new Set<string>();
      for (let id = 0; id < index.entryCount; id++) if (!healthy(id)) wanted.add(index.hashOf(id).toString('hex'));
      healthyCopies = new Map();
      for (let id = 0; id < index.entryCount; id++) {
        if (!healthy(id)) continue;
        const key = index.hashOf(id).toString('hex');
        if (wanted.has(key) && !healthyCopies.has(key)) healthyCopies.set(key, id);
      }
    }
    return healthyCopies.get(h.toString('hex'));
  };
  for (const m of manifests) {
    const problems: string[] = [];
    const need = (h: Buffer, what: string): boolean => {
      const id = index.find(h);
      if (id < 0) {
        problems.push(`${what}: chunk ${h.toString('hex').slice(0, 16)}… is in no index`);
        return false;
      }
      used[id] = 1;
      if (healthy(id)) return true;
      // A good copy elsewhere (a later backup stored the chunk again) serves as well.
      const alt = healthyCopyOf(h);
      if (alt !== undefined) {
        used[alt] = 1;
        return true;
      }
      const pack = index.packName(index.packOf(id));
      const gone = !stored.has(pack);
      problems.push(`${what}: chunk ${h.toString('hex').slice(0, 16)}… lies in pack ${pack}, which is ${gone ? 'missing' : 'damaged'}`);
      if (gone) missingNeeded.set(pack, (missingNeeded.get(pack) ?? new Set()).add(m.id));
      return false;
    };
    const checkPage = (page: Buffer, c: Content, what: string): void => {
      for (let at = 0; at < page.length; at += HASH_SIZE) {
        const h = page.subarray(at, at + HASH_SIZE);
        if (h.equals(ZERO_HASH)) {
          if (c.chunkSize === 0) problems.push(`${what}: names the zero chunk in variable-size content`);
          continue;
        }
        need(h, what);
      }
    };
    const checkContent = async (c: Content, what: string): Promise<void> => {
      for (const l of c.lists ?? []) if (!need(l, what)) return;
      if (c.hashes !== undefined) return checkPage(c.hashes, c, what);
      // A list page found whole (every chunk there) is not read again, by this
      // backup or another: one list blob may be named many times. One with a
      // problem is, so every backup naming it is found damaged.
      for (let i = 0; i < (c.lists ?? []).length; i++) {
        const key = listPageKey(c, i);
        if (checkedLists.has(key)) continue;
        const before = problems.length;
        try {
          checkPage(await listPage(repo, index, c, i), c, what);
        } catch (err) {
          if (!isDeltaDiskError(err)) throw err;
          problems.push(`${what}: ${err.message}`);
          return;
        }
        if (problems.length === before) checkedLists.add(key);
      }
    };
    for (const e of m.entries) {
      if (e.type === 'file') await checkContent(e.content, e.path);
      if (e.type === 'chain') {
        await checkContent(e.chain.capture.content, `${e.path} (current state)`);
        for (const p of e.chain.points) await checkContent(p.content, `${e.path} (snapshot ${p.name})`);
      }
    }
    if (problems.length > 0) {
      failedBackups.push(m.id);
      report('missing-chunk', `backup ${m.id.slice(0, 8)} is damaged: ${problems[0]}${problems.length > 1 ? ` (and ${problems.length - 1} more)` : ''}`, { backup: m.id });
      if (options.record !== false) {
        await repo.backend.write('verify', m.id, [encodeVerifyRecord({ backup: m.id, time: new Date().toISOString(), problems })], 'replace');
      }
    } else {
      passed.push(m.id);
    }
  }
  for (const [pack, backups] of missingNeeded) {
    report('missing-pack', `pack ${pack} is missing; ${backups.size} backup(s) need chunks from it`, { pack });
  }
  if (options.record !== false) {
    const now = new Date().toISOString();
    for (const [pack, d] of damage) await repo.backend.write('damage', pack, [encodeDamageRecord({ pack, time: now, ...d })], 'replace');
    for (const f of await repo.backend.list('damage')) {
      const gone = index.packId(f.name) === undefined && !stored.has(f.name);
      if (gone || (readWhole.has(f.name) && !damage.has(f.name))) await repo.backend.remove('damage', f.name);
    }
    // Only a check that read every chunk may say a backup is whole again (a subset of 1/1 is every chunk).
    const readAll = options.readData === true && (options.subset === undefined || options.subset.t === 1);
    if (readAll) for (const id of passed) await repo.backend.remove('verify', id);
  }

  // 5. Leaks: chunks nothing references, leftover temporary files.
  let unusedCount = 0;
  for (let id = 0; id < index.entryCount; id++) {
    if (used[id] === 1) continue;
    if (unusable.has(index.packOf(id)) || condemned.has(index.packName(index.packOf(id)))) continue;
    unusedCount++;
    stats.unusedBytes += index.storedLengthOf(id);
  }
  if (unusedCount > 0) report('unused-data', `${unusedCount} chunks (${stats.unusedBytes} bytes) are referenced by no backup; prune reclaims them`);
  for (const t of await repo.backend.listTemps()) report('temp-file', `temporary file ${t} (left by an interrupted or running operation)`);
  return { errors, leaks, failedBackups, stats };
}

/** Why pack `p`'s header does not match the index, or undefined when it does. */
async function packHeaderProblem(repo: Repository, index: ChunkIndex, p: number, size: number): Promise<string | undefined> {
  const name = index.packName(p);
  if (size !== index.packSize(p)) return `is ${size} bytes, the index says ${index.packSize(p)}`;
  try {
    const trailer = await repo.backend.readRange('pack', name, size - PACK_TRAILER_SIZE, PACK_TRAILER_SIZE);
    const { headerLength } = decodePackTrailer(trailer, size);
    const tail = await repo.backend.readRange('pack', name, size - PACK_TRAILER_SIZE - headerLength, headerLength + PACK_TRAILER_SIZE);
    if (packNameOf(tail) !== name) return 'has a header that does not match its name';
    decodePackTail(tail, size);
    return undefined;
  } catch (err) {
    if (err instanceof DeltaDiskError) return `cannot be read: ${err.message}`;
    throw err;
  }
}

/** Reads every blob of pack `p`; returns the entries that fail verification. */
async function readPackData(repo: Repository, index: ChunkIndex, p: number, onBytes: (n: number) => void): Promise<number[]> {
  const bad: number[] = [];
  const { first, count } = index.packEntries(p);
  const name = index.packName(p);
  // The page-aligned range around a group fits a 16 MiB pooled buffer (readRangeDirect).
  const GROUP = 16 * 1024 * 1024 - 2 * DIRECT_ALIGN;
  let id = first;
  while (id < first + count) {
    const start = index.offsetOf(id);
    let end = id;
    let len = 0;
    while (end < first + count && (len === 0 || len + index.storedLengthOf(end) <= GROUP)) len += index.storedLengthOf(end++);
    let leased: LeasedBytes;
    try {
      // Past the page cache where the backend can: every pack is read once.
      leased = await readLeased(repo.backend, 'pack', name, start, len);
    } catch (err) {
      if (!(err instanceof DeltaDiskError)) throw err;
      for (let k = id; k < end; k++) bad.push(k);
      id = end;
      continue;
    }
    onBytes(len);
    try {
      for (let k = id; k < end; k++) {
        const at = index.offsetOf(k) - start;
        try {
          await repo.decodeBlob(index, k, leased.bytes.subarray(at, at + index.storedLengthOf(k)));
        } catch (err) {
          if (!(err instanceof DeltaDiskError)) throw err;
          bad.push(k);
        }
      }
    } finally {
      leased.release();
    }
    id = end;
  }
  return bad;
}
