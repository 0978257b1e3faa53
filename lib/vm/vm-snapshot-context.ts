/**
 * What every changing VM-snapshot operation starts with: the VM lock, the vmx and
 * vmsd, every chain disk of the VM opened for writing (all locked before anything
 * changes), and recovery of whatever an interrupted operation left behind.
 *
 * Recovery rules (the vmsd is the commit point of every VM snapshot operation and
 * only ever names snapshots every disk has):
 *  - a revert whose vmsd carries `deltadisk.revertPending` is finished (it is
 *    idempotent: disks reverted again, configuration restored again);
 *  - disk snapshots `vm-snapshot-<uid>` that the vmsd does not name are removed
 *    when they were never committed (uid above `snapshot.lastUID`: a create that
 *    stopped) or when our own vmsn for that uid is still there (a delete that
 *    stopped after its commit); likewise their vmsn and vmem files. VMware's own
 *    files (another vmsn magic) are never touched, nor is anything by such a name
 *    that is not a regular file (a directory, a FIFO, a symbolic link).
 */
import path from 'node:path';
import { Disk } from '../chain/disk.js';
import { DeltaDiskError, fromSystemError } from '../errors.js';
import { decodeVmsn, isOurVmsn, MAX_VMSN_CONFIG, MAX_VMSN_METADATA, type Vmsn } from '../format/vmsn.js';
import { atomicReplace } from '../io/atomic-replace.js';
import type { FileSystem } from '../io/file-system.js';
import { nodeFileSystem } from '../io/node-file-system.js';
import { readUpTo } from '../io/positional.js';
import { acquireWriterLock, type WriterLock } from '../io/writer-lock.js';
import { VM_SNAPSHOT_DISK_NAME } from './chain-disk-probe.js';
import { locateVm, readSmallFile, readVmsd, readVmx, type VmLocation } from './vm-inventory.js';
import { resolveVmReference } from './vm-reference.js';
import { withReadHandle } from './vmdk-reader.js';
import { encodeVmsd, type Vmsd } from './vmsd-file.js';
import { MAX_VMX_BYTES, type VmxConfig } from './vmx-file.js';

export const REVERT_PENDING_KEY = 'deltadisk.revertPending';

export interface VmSnapshotOptions {
  /** The file system (tests inject faults); default the real one. */
  readonly fs?: FileSystem;
  readonly allowPaths?: readonly string[];
  /** Take the VM and disk locks; default true on the real file system. */
  readonly lock?: boolean;
}

export interface OpenChainDisk {
  readonly node: string;
  readonly fileName: string;
  readonly path: string;
  readonly disk: Disk;
}

export class VmSnapshotContext {
  readonly fs: FileSystem;
  readonly loc: VmLocation;
  vmx: VmxConfig;
  vmsd: Vmsd;
  readonly disks: OpenChainDisk[];
  readonly #lock: WriterLock | undefined;
  readonly #o: VmSnapshotOptions;
  /** What recovery did, for reporting. */
  readonly recovered: string[] = [];

  private constructor(fs: FileSystem, loc: VmLocation, vmx: VmxConfig, vmsd: Vmsd, disks: OpenChainDisk[], lock: WriterLock | undefined, o: VmSnapshotOptions) {
    this.fs = fs;
    this.loc = loc;
    this.vmx = vmx;
    this.vmsd = vmsd;
    this.disks = disks;
    this.#lock = lock;
    this.#o = o;
  }

  get vmxPath(): string {
    return path.join(this.loc.dir, this.loc.vmx);
  }

  get vmsdPath(): string {
    return path.join(this.loc.dir, `${this.loc.stem}.vmsd`);
  }

  vmsnName(uid: number): string {
    return `${this.loc.stem}-Snapshot${uid}.vmsn`;
  }

  vmemName(uid: number): string {
    return `${this.loc.stem}-Snapshot${uid}.vmem`;
  }

  /** @throws LOCKED, VM_INVALID, UNSUPPORTED (a VMDK disk), NOT_FOUND, UNSAFE_PATH … */
  static async open(target: string, o: VmSnapshotOptions, purpose: string): Promise<VmSnapshotContext> {
    const fs = o.fs ?? nodeFileSystem;
    const loc = await locateVm(target, fs);
    const useLock = o.lock ?? fs === nodeFileSystem;
    const lock = useLock ? await acquireWriterLock(path.join(loc.dir, loc.vmx), purpose) : undefined;
    const disks: OpenChainDisk[] = [];
    try {
      const vmx = await readVmx(fs, loc);
      const { vmsd } = await readVmsd(fs, loc);
      for (const d of vmx.disks) {
        if (d.independent) continue;
        if (d.format !== 'chain') {
          throw new DeltaDiskError('UNSUPPORTED', `disk ${d.node} (${d.fileName}) is a VMDK: VM snapshots need every disk that is not independent to be a deltadisk chain`);
        }
      }
      const ctx = new VmSnapshotContext(fs, loc, vmx, vmsd, disks, lock, o);
      for (const d of vmx.disks.filter((x) => !x.independent)) await ctx.openDisk(d.node, d.fileName);
      return ctx;
    } catch (err) {
      for (const d of disks) await d.disk.close().catch(() => undefined);
      await lock?.release();
      throw err;
    }
  }

  /** Opens (once) the chain disk a vmx or vmsn names, inside the VM directory. */
  async openDisk(node: string, fileName: string): Promise<OpenChainDisk> {
    const r = await resolveVmReference({ fs: this.fs, vmDir: this.loc.dir, allowPaths: this.#o.allowPaths ?? [] }, this.loc.dir, fileName, `disk ${node}`);
    if (r.kind !== 'ok') {
      throw new DeltaDiskError(r.kind === 'missing' ? 'NOT_FOUND' : 'UNSAFE_PATH', `disk ${node} (${fileName}) cannot be used: ${r.kind === 'unsafe' ? r.error.message : r.kind}`, { path: r.path });
    }
    const open = this.disks.find((d) => d.path === r.path);
    if (open !== undefined) return open;
    const disk = await Disk.open(r.path, { fs: this.fs, allowPaths: [this.loc.dir, ...(this.#o.allowPaths ?? [])], ...(this.#o.lock === undefined ? {} : { lock: this.#o.lock }) });
    const entry = { node, fileName, path: r.path, disk };
    this.disks.push(entry);
    return entry;
  }

  async writeVmsd(next: Vmsd): Promise<void> {
    await atomicReplace(this.fs, this.vmsdPath, encodeVmsd(next));
    this.vmsd = next;
  }

  async readConfig(): Promise<Buffer> {
    return readSmallFile(this.fs, this.vmxPath, MAX_VMX_BYTES, 'configuration');
  }

  /**
   * Resolves a file name the vmsd or a vmsn gives (a snapshot's state or memory
   * file) to a file this VM owns: inside the VM directory (the user's --allow-path
   * does not extend to files we read back or delete), reached without a symbolic
   * link, a regular file, and none of the VM's configuration, snapshot list or
   * disks. These names are data, possibly hostile: without this, deleting a
   * snapshot named `../victim.txt` would delete a file outside the VM, and a revert
   * would copy out whatever its vmsn names as memory.
   * @returns the path, or null when the file does not exist
   * @throws UNSAFE_PATH (refused; nothing has been changed by this call)
   */
  async ownFile(name: string, what: string): Promise<string | null> {
    const r = await resolveVmReference({ fs: this.fs, vmDir: this.loc.dir, allowPaths: [] }, this.loc.dir, name, what);
    if (r.kind === 'missing') {
      // A dangling symbolic link is "missing" to the resolver but still a name we must not follow or delete through.
      const link = await this.fs.lstat(r.path).catch(() => undefined);
      if (link === undefined) return null;
      throw new DeltaDiskError('UNSAFE_PATH', `${what} ${JSON.stringify(name)} is not a regular file of the VM directory`, { path: r.path });
    }
    if (r.kind === 'outside') throw new DeltaDiskError('UNSAFE_PATH', `${what} ${JSON.stringify(name)} lies outside the VM directory ${this.loc.dir}`, { path: r.path });
    if (r.kind === 'unsafe') throw new DeltaDiskError('UNSAFE_PATH', r.error.message, { path: r.path, cause: r.error });
    const lexical = path.resolve(this.loc.dir, name);
    const st = await this.fs.lstat(lexical).catch((err: unknown) => {
      throw fromSystemError(err, lexical, `${what} cannot be examined`);
    });
    if (st.isSymbolicLink || !st.isFile || r.path !== lexical) {
      throw new DeltaDiskError('UNSAFE_PATH', `${what} ${JSON.stringify(name)} is reached through a symbolic link or is not a regular file; it is not used`, { path: lexical });
    }
    if (r.path === this.vmxPath || r.path === this.vmsdPath || this.disks.some((d) => d.path === r.path)) {
      throw new DeltaDiskError('UNSAFE_PATH', `${what} ${JSON.stringify(name)} names the VM's configuration, snapshot list or a disk`, { path: r.path });
    }
    return r.path;
  }

  /** Reads a snapshot's vmsn, named by the vmsd: guarded by {@link ownFile}. @throws NOT_FOUND, UNSAFE_PATH, CHAIN_CORRUPT … */
  async readVmsn(name: string): Promise<Vmsn> {
    const p = await this.ownFile(name, 'snapshot state');
    if (p === null) throw new DeltaDiskError('NOT_FOUND', `snapshot state ${name} does not exist`, { path: path.resolve(this.loc.dir, name) });
    return decodeVmsn(await readSmallFile(this.fs, p, 32 + MAX_VMSN_METADATA + MAX_VMSN_CONFIG, 'snapshot state'), p);
  }

  async exists(name: string): Promise<boolean> {
    return this.fs.lstat(path.join(this.loc.dir, name)).then(() => true, () => false);
  }

  /** Removes a file of the VM directory; `name` must be a plain name we derived, or a path {@link ownFile} returned. */
  async removeFile(name: string): Promise<void> {
    const p = path.resolve(this.loc.dir, name);
    await this.fs.unlink(p).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'ENOENT') throw fromSystemError(err, p, `removing ${name} failed`);
    });
  }

  async close(): Promise<void> {
    for (const d of this.disks) await d.disk.close().catch(() => undefined);
    await this.#lock?.release();
  }

  /** Finishes or removes what an interrupted operation left (see the module comment). */
  async recover(finishRevert: (ctx: VmSnapshotContext, uid: number) => Promise<void>): Promise<void> {
    const pending = this.vmsd.extra.find(([k]) => k.toLowerCase() === REVERT_PENDING_KEY.toLowerCase());
    if (pending !== undefined) {
      await finishRevert(this, Number(pending[1]));
      this.recovered.push(`finished the interrupted revert to snapshot ${pending[1]}`);
    }
    const named = new Set(this.vmsd.snapshots.map((s) => s.uid));
    const ours = new Set<number>();
    const pattern = new RegExp(`^${this.loc.stem.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}-Snapshot(\\d{1,10})\\.(vmsn|vmem)$`);
    const leftovers: { uid: number; name: string; vmsn: boolean }[] = [];
    for (const name of await this.fs.readdir(this.loc.dir)) {
      const m = pattern.exec(name);
      if (m === null || named.has(Number(m[1]))) continue;
      // Only regular files are ours to read or remove: not a directory, a FIFO, or a symbolic link (leading anywhere).
      const st = await this.fs.lstat(path.join(this.loc.dir, name)).catch(() => undefined);
      if (st === undefined || !st.isFile || st.isSymbolicLink) continue;
      const uid = Number(m[1]);
      const vmsn = m[2] === 'vmsn';
      if (vmsn && (await this.#isOurs(name))) ours.add(uid);
      leftovers.push({ uid, name, vmsn });
    }
    const removable = (uid: number): boolean => !named.has(uid) && (uid > this.vmsd.lastUID || ours.has(uid));
    for (const d of this.disks) {
      for (const s of d.disk.snapshots()) {
        const m = VM_SNAPSHOT_DISK_NAME.exec(s.name);
        if (m !== null && removable(Number(m[1]))) {
          await d.disk.deleteSnapshot(s.name);
          this.recovered.push(`removed ${s.name} of ${d.fileName}, left by an interrupted VM snapshot operation`);
        }
      }
    }
    // The vmem before the vmsn: the vmsn is the evidence that the files are ours.
    for (const l of leftovers.sort((a, b) => Number(a.vmsn) - Number(b.vmsn))) {
      if (!removable(l.uid) || (l.vmsn && !ours.has(l.uid)) || (!l.vmsn && !ours.has(l.uid) && l.uid <= this.vmsd.lastUID)) continue;
      await this.removeFile(l.name);
      this.recovered.push(`removed ${l.name}, left by an interrupted VM snapshot operation`);
    }
    if (leftovers.length > 0) await this.fs.syncDir(this.loc.dir);
  }

  async #isOurs(name: string): Promise<boolean> {
    return withReadHandle(this.fs, path.join(this.loc.dir, name), 'snapshot state', async (h) => isOurVmsn(await readUpTo(h, 0, 8))).catch(() => false);
  }
}
