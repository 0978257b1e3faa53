/**
 * Restoring a backed-up disk as a working chain, with the snapshots chosen at backup
 * time, or flattened to one raw image.
 *
 * The chain is built in a fresh hidden directory beside its destination: created
 * empty, then the points in time are written parents first (depth first, oldest
 * child first): each point starts from its parent's snapshot (`revert`, which is how
 * a branch is made) and receives only the chunks that differ from the parent, then is
 * snapshotted under its original name; the state captured by the backup goes last and
 * stays the current state. Only when the chain is complete and closed are its files
 * moved into place, the descriptor last (its appearance is the commit point).
 */
import { SNAPSHOT_ID } from '../chain/disk-types.js';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { Disk } from '../chain/disk.js';
import { DeltaDiskError, fromSystemError } from '../errors.js';
import type { ChainEntry, ChainPoint, Content } from '../format/manifest.js';
import { HASH_SIZE, ZERO_HASH } from '../format/repo-limits.js';
import { TEMP_INFIX } from '../io/atomic-replace.js';
import type { FileSystem } from '../io/file-system.js';
import { fetchChunks, type ChunkRequest } from './blob-fetch.js';
import { contentPages } from './content-list.js';
import type { TargetContext } from './restore-target.js';
import { verifyContent } from './restore-verify.js';

/** Points parents first (children by time), the capture last. */
export function restoreOrder(chain: ChainEntry['chain']): ChainPoint[] {
  const children = new Map<string | null, ChainPoint[]>();
  for (const p of chain.points) children.set(p.parent, [...(children.get(p.parent) ?? []), p]);
  for (const list of children.values()) list.sort((a, b) => (a.created < b.created ? -1 : a.created > b.created ? 1 : a.name < b.name ? -1 : 1));
  const out: ChainPoint[] = [];
  const visit = (parent: string | null): void => {
    for (const p of children.get(parent) ?? []) {
      out.push(p);
      visit(p.id);
    }
  };
  visit(null);
  out.push(chain.capture);
  return out;
}

async function* lockstep(t: TargetContext, c: Content, base: Content | undefined): AsyncGenerator<[Buffer, Buffer | undefined]> {
  const basePages = base === undefined ? undefined : contentPages(t.repo, t.index, base);
  try {
    for await (const page of contentPages(t.repo, t.index, c)) {
      if (basePages === undefined) {
        yield [page, undefined];
        continue;
      }
      // The manifest guarantees points cut alike; a base that does not line up would
      // silently leave the base's data where this point differs from it.
      const b = (await basePages.next()).value;
      if (!(b instanceof Buffer) || b.length !== page.length) throw new DeltaDiskError('REPO_CORRUPT', 'the points in time of a disk are not cut in the same chunks');
      yield [page, b];
    }
  } finally {
    await basePages?.return(undefined);
  }
}

/** Writes into `disk` the chunks of `c` that differ from `base` (all non-zero ones without a base). */
async function writeDifference(t: TargetContext, disk: Disk, c: Content, base: Content | undefined, what: string): Promise<void> {
  const cs = c.chunkSize;
  const lengthOf = (i: number): number => Math.min(cs, c.size - i * cs);
  let first = 0;
  for await (const [page, basePage] of lockstep(t, c, base)) {
    const n = page.length / HASH_SIZE;
    const requests: ChunkRequest[] = [];
    let zeroStart = -1;
    const flushZeros = async (end: number): Promise<void> => {
      if (zeroStart < 0) return;
      await disk.writeZeroes(zeroStart * cs, Math.min(c.size, end * cs) - zeroStart * cs);
      zeroStart = -1;
    };
    let bytes = 0;
    for (let k = 0; k < n; k++) {
      const i = first + k;
      const h = page.subarray(k * HASH_SIZE, (k + 1) * HASH_SIZE);
      bytes += lengthOf(i);
      const same = basePage !== undefined ? basePage.subarray(k * HASH_SIZE, (k + 1) * HASH_SIZE).equals(h) : h.equals(ZERO_HASH);
      if (same) {
        await flushZeros(i);
        continue;
      }
      if (h.equals(ZERO_HASH)) {
        if (zeroStart < 0) zeroStart = i;
        continue;
      }
      await flushZeros(i);
      requests.push({ key: i, hash: Buffer.from(h) });
    }
    await flushZeros(first + n);
    for await (const f of fetchChunks(t.repo, t.index, requests, what)) {
      if (f.data.length !== lengthOf(f.key)) throw new DeltaDiskError('REPO_CORRUPT', `${what}: chunk ${f.key} has the wrong length`);
      await disk.write(f.key * cs, f.data);
    }
    t.onBytes(bytes);
    first += n;
  }
}

/**
 * Links `from` in as `to`, never replacing anything (link() fails if `to` exists).
 * Once the link is made `to` is in place; the old name is left for the caller's
 * cleanup of the work directory.
 */
async function moveInto(fs: FileSystem, from: string, to: string): Promise<void> {
  try {
    await fs.link(from, to);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') throw new DeltaDiskError('ALREADY_EXISTS', `${to} exists; not replacing it`, { path: to });
    throw fromSystemError(err, to, 'moving a restored disk into place failed');
  }
  await fs.unlink(from).catch(() => undefined);
}

/**
 * Restores chain entry `e` as a working chain at `final` (a `.chain` path).
 *
 * Every file of the chain gets the entry's mode (without setuid, setgid and sticky)
 * and modification time, as a restored file does. Until the descriptor is in place
 * nothing is left behind on failure: delta files already moved beside it are removed
 * again (they are ours: link() never replaces a name), so a failed restore does not
 * block the next one.
 */
export async function restoreChain(t: TargetContext, e: ChainEntry, final: string): Promise<void> {
  const chain = e.chain;
  const dir = path.dirname(final);
  const name = path.basename(final);
  const work = path.join(dir, `.deltadisk-restore-${randomBytes(6).toString('hex')}`);
  await t.fs.mkdir(work, 0o700).catch((err: unknown) => {
    throw fromSystemError(err, work, 'creating a work directory failed');
  });
  const placed: string[] = [];
  let committed = false;
  try {
    const desc = path.join(work, name);
    const disk = await Disk.create(desc, { size: chain.virtualSize, blockSize: chain.blockSize, dedup: chain.dedup, fs: t.fs }).catch((err: unknown) => {
      throw fromSystemError(err, final, 'creating a restored disk failed');
    });
    try {
      const order = restoreOrder(chain);
      const byId = new Map(chain.points.map((p) => [p.id, p]));
      let sitsOn: string | undefined;
      let written = false;
      for (const p of order) {
        const base = p.parent !== null ? byId.get(p.parent) : written ? order[0] : undefined;
        if (base !== undefined && sitsOn !== base.id) await disk.revert(base.name);
        await writeDifference(t, disk, p.content, base?.content, `${final} (${p === chain.capture ? 'current state' : `snapshot ${p.name}`})`);
        written = true;
        if (p !== chain.capture) {
          // Same id and time as in the source disk: a VM's snapshot tree names disk snapshots by id.
          await disk.snapshot(p.name, p.description, {
            ...(SNAPSHOT_ID.test(p.id) ? { id: p.id } : {}),
            ...(Number.isNaN(Date.parse(p.created)) ? {} : { created: p.created }),
          });
          sitsOn = p.id;
        } else {
          sitsOn = undefined;
        }
      }
      await disk.flush();
    } finally {
      await disk.close();
    }
    const listed = await t.fs.readdir(work).catch((err: unknown) => {
      throw fromSystemError(err, work, 'listing a restored disk failed');
    });
    const names = listed.filter((n) => n !== name && !n.includes(TEMP_INFIX) && !n.endsWith('.lock'));
    for (const n of [...names, name]) {
      const p = path.join(work, n);
      try {
        await t.ops.chmod(p, e.mode & 0o777);
        await t.ops.lutimes(p, e.mtimeMs, e.mtimeMs);
      } catch (err) {
        throw fromSystemError(err, final, 'setting the mode and time of a restored disk failed');
      }
    }
    for (const n of names) {
      await moveInto(t.fs, path.join(work, n), path.join(dir, n));
      placed.push(path.join(dir, n));
    }
    await moveInto(t.fs, desc, final);
    committed = true;
  } finally {
    if (!committed) for (const p of placed.reverse()) await t.fs.unlink(p).catch(() => undefined);
    if (placed.length > 0 || committed) t.touched.add(dir);
    for (const n of await t.fs.readdir(work).catch(() => [] as string[])) await t.fs.unlink(path.join(work, n)).catch(() => undefined);
    await t.fs.rmdir(work).catch(() => undefined);
  }
}

/** Reads the restored chain back and compares every point with the backup. */
export async function verifyChain(t: TargetContext, e: ChainEntry, final: string): Promise<void> {
  const disk = await Disk.open(final, { readOnly: true, fs: t.fs });
  try {
    const current = disk.currentReader();
    await verifyContent(t.repo, t.index, e.chain.capture.content, (o, l) => (o >= current.virtualSize ? Promise.resolve(Buffer.alloc(0)) : current.read(o, Math.min(l, current.virtualSize - o))), `${final} (current state)`);
    for (const p of e.chain.points) {
      const r = await disk.openSnapshot(p.name);
      try {
        await verifyContent(t.repo, t.index, p.content, (o, l) => (o >= r.virtualSize ? Promise.resolve(Buffer.alloc(0)) : r.read(o, Math.min(l, r.virtualSize - o))), `${final} (snapshot ${p.name})`);
      } finally {
        await r.close();
      }
    }
  } finally {
    await disk.close();
  }
}
