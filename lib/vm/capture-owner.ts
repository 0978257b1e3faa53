/**
 * Who owns a capture directory (`.deltadisk-capture-<id>/`), so that one left by a
 * killed backup is removed and one in use by a running backup never is.
 *
 * The capture binds a liveness socket (lib/repo/liveness.ts: a Linux abstract socket
 * the kernel releases the instant its process dies) and writes its identity into
 * `<capture dir>/.owner`. A later capture of the same VM removes every capture
 * directory whose owner is provably gone (or that has no owner file and is over an
 * hour old: a capture killed between creating the directory and claiming it).
 * Anything else (alive, or not provable from here: another host) stays.
 */
import { randomBytes } from 'node:crypto';
import fsp from 'node:fs/promises';
import type net from 'node:net';
import path from 'node:path';
import { BOOT_ID, HOST, holdLiveness, MACHINE_ID, NETNS, probeHolder, releaseLiveness, type HolderIdentity } from '../repo/liveness.js';
import { CAPTURE_DIR_PREFIX } from './leftover-files.js';

const OWNER = '.owner';
const MAX_OWNER_BYTES = 4096;
const UNCLAIMED_GRACE_MS = 3600_000;

export interface CaptureClaim {
  release(): Promise<void>;
}

/** Marks `dir` as owned by this process until `release`. */
export async function claimCaptureDir(dir: string): Promise<CaptureClaim> {
  const token = `capture-${randomBytes(12).toString('hex')}`;
  const server: net.Server | undefined = await holdLiveness(token);
  const me: HolderIdentity = { host: HOST, pid: process.pid, bootId: BOOT_ID, machineId: MACHINE_ID, netns: NETNS, token };
  await fsp.writeFile(path.join(dir, OWNER), JSON.stringify(me), { mode: 0o600 });
  return { release: () => releaseLiveness(server) };
}

async function ownerOf(dir: string): Promise<HolderIdentity | undefined> {
  try {
    const h = await fsp.open(path.join(dir, OWNER), 'r');
    try {
      const buf = Buffer.alloc(MAX_OWNER_BYTES);
      const { bytesRead } = await h.read(buf, 0, buf.length, 0);
      const v = JSON.parse(buf.subarray(0, bytesRead).toString('utf8')) as Partial<HolderIdentity>;
      if (typeof v.host !== 'string' || typeof v.pid !== 'number' || typeof v.bootId !== 'string' || typeof v.netns !== 'string' || typeof v.token !== 'string') return undefined;
      if (v.machineId !== undefined && typeof v.machineId !== 'string') return undefined;
      return v as HolderIdentity;
    } finally {
      await h.close();
    }
  } catch {
    return undefined;
  }
}

/** Removes the capture directories in `vmDir` whose owner is provably gone; returns their names. */
export async function removeDeadCaptureDirs(vmDir: string): Promise<string[]> {
  const removed: string[] = [];
  for (const name of await fsp.readdir(vmDir).catch(() => [] as string[])) {
    if (!name.startsWith(CAPTURE_DIR_PREFIX)) continue;
    const dir = path.join(vmDir, name);
    const st = await fsp.lstat(dir).catch(() => undefined);
    if (st === undefined || !st.isDirectory()) continue;
    const owner = await ownerOf(dir);
    const dead = owner === undefined ? Date.now() - st.mtimeMs > UNCLAIMED_GRACE_MS : (await probeHolder(owner)) === 'dead';
    if (!dead) continue;
    await fsp.rm(dir, { recursive: true, force: true });
    removed.push(name);
  }
  return removed;
}
