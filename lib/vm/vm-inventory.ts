/**
 * `inspectVm`: reads a VM directory and tells what it consists of, what must not be
 * copied and why, and what is wrong with it.
 *
 * It only reads (chain disks are opened read-only, no lock is taken), so it is safe
 * on a running VM. Every name found in metadata goes through the VM path guard: a
 * disk outside the directory is reported and left out unless the user allowed its
 * path. Problems are findings, not exceptions: the call fails only when there is no
 * VM to look at (no or several .vmx files, an unreadable .vmx: VM_INVALID,
 * LIMIT_EXCEEDED, NOT_FOUND).
 */
import path from 'node:path';
import { DeltaDiskError, fromSystemError, isDeltaDiskError } from '../errors.js';
import type { FileSystem } from '../io/file-system.js';
import { nodeFileSystem } from '../io/node-file-system.js';
import { readUpTo } from '../io/positional.js';
import { probeChainDisk, VM_SNAPSHOT_DISK_NAME } from './chain-disk-probe.js';
import { classifyLeftover, isVmwareLog } from './leftover-files.js';
import { VmFindings } from './vm-findings.js';
import type { InspectOptions, SkippedFile, VmDisk, VmdkLink, VmInventory, VmSnapshotNode } from './vm-inventory-types.js';
import { isInside, resolveVmReference } from './vm-reference.js';
import { walkVmdkChain } from './vmdk-chain-walk.js';
import { EMPTY_VMSD, MAX_VMSD_BYTES, parseVmsd, type Vmsd } from './vmsd-file.js';
import { MAX_VMX_BYTES, parseVmx, type VmxConfig } from './vmx-file.js';
import { withReadHandle } from './vmdk-reader.js';

export const MAX_DIRECTORY_ENTRIES = 100_000;

export interface VmLocation {
  /** Real path of the VM directory. */
  readonly dir: string;
  /** File name of the configuration inside it. */
  readonly vmx: string;
  /** The vmx name without its extension: the stem VMware derives other names from. */
  readonly stem: string;
}

/**
 * Finds the VM: `target` is the VM directory (holding exactly one .vmx, or else one
 * .vmtx) or the configuration file itself.
 * @throws NOT_FOUND, VM_INVALID
 */
export async function locateVm(target: string, fs: FileSystem = nodeFileSystem): Promise<VmLocation> {
  const abs = path.resolve(target);
  const st = await fs.stat(abs).catch((err: unknown) => {
    throw fromSystemError(err, abs, 'opening the VM failed');
  });
  let dir: string;
  let vmx: string;
  if (st.isFile) {
    if (!/\.vm[xt]x?$/i.test(abs)) throw new DeltaDiskError('VM_INVALID', `${abs} is not a .vmx file`, { path: abs });
    dir = path.dirname(abs);
    vmx = path.basename(abs);
  } else {
    dir = abs;
    const names = await readDirBounded(fs, dir);
    const vmxs = names.filter((n) => /\.vmx$/i.test(n));
    const candidates = vmxs.length > 0 ? vmxs : names.filter((n) => /\.vmtx$/i.test(n));
    if (candidates.length === 0) throw new DeltaDiskError('VM_INVALID', `${dir} holds no .vmx file`, { path: dir });
    if (candidates.length > 1) {
      throw new DeltaDiskError('VM_INVALID', `${dir} holds several configurations (${candidates.join(', ')}); name the .vmx file`, { path: dir });
    }
    vmx = candidates[0]!;
  }
  const real = await fs.realpath(dir);
  if (!st.isFile) {
    // Found by listing: it must be the directory's own file. A symbolic link leading
    // out would have us read, back up and (reverting a snapshot) rewrite another.
    const at = path.join(real, vmx);
    const to = await fs.realpath(at).catch((err: unknown) => {
      throw fromSystemError(err, at, 'opening the configuration failed');
    });
    if (!isInside(real, to)) throw new DeltaDiskError('UNSAFE_PATH', `${at} is a symbolic link leading outside the VM directory (to ${to}); name the .vmx file itself if it is meant`, { path: at });
  }
  return { dir: real, vmx, stem: vmx.replace(/\.vm[xt]x?$/i, '') };
}

async function readDirBounded(fs: FileSystem, dir: string): Promise<string[]> {
  const names = await fs.readdir(dir).catch((err: unknown) => {
    throw fromSystemError(err, dir, 'listing the VM directory failed');
  });
  if (names.length > MAX_DIRECTORY_ENTRIES) throw new DeltaDiskError('LIMIT_EXCEEDED', `${dir} has more than ${MAX_DIRECTORY_ENTRIES} entries`, { path: dir });
  return names.sort();
}

/** Reads a small configuration file whole, refusing more than `max` bytes. */
export async function readSmallFile(fs: FileSystem, p: string, max: number, what: string): Promise<Buffer> {
  return withReadHandle(fs, p, what, async (h, size) => {
    if (size > max) throw new DeltaDiskError('LIMIT_EXCEEDED', `${what} ${p} is ${size} bytes, at most ${max} are accepted`, { path: p });
    return readUpTo(h, 0, max + 1);
  });
}

export async function readVmx(fs: FileSystem, loc: VmLocation): Promise<VmxConfig> {
  const p = path.join(loc.dir, loc.vmx);
  return parseVmx(await readSmallFile(fs, p, MAX_VMX_BYTES, 'configuration'), p);
}

/**
 * The vmsd of a VM; an absent file is an empty tree. It is read only when it is a
 * regular file inside the VM directory (a symbolic link leading out is refused: its
 * snapshot names would otherwise steer what we read and delete).
 * @throws UNSAFE_PATH, LIMIT_EXCEEDED, VM_INVALID …
 */
export async function readVmsd(fs: FileSystem, loc: VmLocation): Promise<{ vmsd: Vmsd; exists: boolean }> {
  const name = `${loc.stem}.vmsd`;
  const p = path.join(loc.dir, name);
  const exists = await fs.lstat(p).then(() => true, () => false);
  if (!exists) return { vmsd: EMPTY_VMSD, exists };
  const r = await resolveVmReference({ fs, vmDir: loc.dir, allowPaths: [] }, loc.dir, `./${name}`, 'snapshot database');
  if (r.kind !== 'ok' || !r.inside) {
    const why = r.kind === 'unsafe' ? r.error.message : `${name} is not a regular file inside ${loc.dir}`;
    throw new DeltaDiskError('UNSAFE_PATH', why, { path: p });
  }
  return { vmsd: parseVmsd(await readSmallFile(fs, r.path, MAX_VMSD_BYTES, 'snapshot database'), r.path), exists };
}

/** Inspects a VM directory. See the module comment. */
export async function inspectVm(target: string, options: InspectOptions & { fs?: FileSystem } = {}): Promise<VmInventory> {
  const fs = options.fs ?? nodeFileSystem;
  const loc = await locateVm(target, fs);
  const f = new VmFindings(fs, loc.dir, (options.allowPaths ?? []).map((p) => path.resolve(p)));
  const openChains = options.openChains ?? true;
  const vmx = await readVmx(fs, loc);
  await f.addFile(path.join(loc.dir, loc.vmx), 'config');
  for (const dup of vmx.doc.duplicates) f.problem('CONFIG_INCONSISTENT', 'warning', `${loc.vmx}: key ${dup} is given more than once; the last value is used`);
  if (vmx.doc.invalidLines.length > 0) f.problem('CONFIG_INCONSISTENT', 'warning', `${loc.vmx}: lines ${vmx.doc.invalidLines.slice(0, 10).join(', ')} cannot be parsed and are ignored`);
  const entries = await readDirBounded(fs, loc.dir);
  const isDir = new Map<string, boolean>();
  for (const name of entries) isDir.set(name, await fs.lstat(path.join(loc.dir, name)).then((s) => s.isDirectory, () => false));
  const looksRunning = entries.some((n) => isDir.get(n) === true && n.toLowerCase().endsWith('.lck'));
  if (looksRunning) f.problem('VM_RUNNING', 'warning', 'lock directories (*.lck) are present: the VM is running, or its host crashed; files captured without a freeze are not from one instant');
  if (vmx.cleanShutdown === false && !looksRunning) f.problem('UNCLEAN_SHUTDOWN', 'info', 'the VM was not shut down cleanly (cleanShutdown = FALSE)');

  const known = new Map<string, VmdkLink[]>();
  const disks = await inspectDisks(f, vmx, known, openChains);
  const { vmsd, exists } = await readVmsd(fs, loc).catch((err: unknown) => {
    if (!isDeltaDiskError(err)) throw err;
    f.problem('SNAPSHOT_INCONSISTENT', 'error', `${loc.stem}.vmsd cannot be read: ${err.message} [${err.code}]`);
    return { vmsd: EMPTY_VMSD, exists: false };
  });
  if (exists) await f.addFile(await fs.realpath(path.join(loc.dir, `${loc.stem}.vmsd`)), 'snapshot-list');
  const snapshots = await inspectSnapshots(f, vmsd, disks, known);

  await addNamedFile(f, vmx.nvram ?? `${loc.stem}.nvram`, 'nvram', vmx.nvram !== undefined);
  if (vmx.extendedConfigFile !== undefined) await addNamedFile(f, vmx.extendedConfigFile, 'extended-config', true);
  const suspended = vmx.suspendState !== undefined;
  if (suspended) await addNamedFile(f, vmx.suspendState!, 'suspend-state', true, 'error');
  const skipped: SkippedFile[] = [];
  for (const name of entries) {
    const p = path.join(loc.dir, name);
    if (f.files.has(p)) continue;
    const lower = name.toLowerCase();
    if (isDir.get(name) !== true && (isVmwareLog(name) || (vmx.logFile !== undefined && name === vmx.logFile))) {
      if (options.includeLogs !== false) {
        await addDirectoryEntry(f, name, 'log');
        continue;
      }
    }
    if (suspended && isDir.get(name) !== true && lower.endsWith('.vmem')) {
      await addDirectoryEntry(f, name, 'suspend-memory', 'error');
      continue;
    }
    const left = classifyLeftover(name, isDir.get(name) === true, suspended);
    if (left.kind === 'unknown' && options.includeUnknown === true && isDir.get(name) !== true) {
      await addDirectoryEntry(f, name, 'other');
      continue;
    }
    skipped.push({ name, kind: left.kind, reason: left.reason });
    if (left.kind === 'unknown') f.problem('UNKNOWN_FILE', 'warning', `${name}: ${left.reason}; not included`, { path: p });
    if (left.kind === 'orphan') f.problem('ORPHAN_FILE', 'warning', `${name}: ${left.reason}; not included`, { path: p });
  }
  const order = { error: 0, warning: 1, info: 2 } as const;
  return {
    dir: loc.dir,
    vmx: loc.vmx,
    displayName: vmx.displayName ?? null,
    suspended,
    looksRunning,
    files: [...f.files.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0)),
    skipped,
    disks,
    snapshots,
    problems: [...f.problems].sort((a, b) => order[a.severity] - order[b.severity]),
  };
}

/**
 * Adds a file found by listing the VM directory. A directory entry is a name like
 * any other: a symbolic link leading outside (or to something that is not a regular
 * file) is reported, not followed, exactly as a name found in the vmx would be.
 */
async function addDirectoryEntry(f: VmFindings, name: string, kind: 'log' | 'suspend-memory' | 'other', severity: 'warning' | 'error' = 'warning'): Promise<void> {
  // `./` keeps a name such as `c:x` a file name rather than a protocol-like reference.
  const r = await resolveVmReference(f, f.vmDir, `./${name}`, kind === 'other' ? 'file' : kind);
  const p = f.resolvedOrReport(r, kind === 'other' ? 'file' : kind, severity);
  if (p !== undefined) await f.addFile(p, kind);
}

async function addNamedFile(f: VmFindings, ref: string, kind: 'nvram' | 'extended-config' | 'suspend-state', named: boolean, severity: 'warning' | 'error' = 'warning'): Promise<void> {
  const r = await resolveVmReference(f, f.vmDir, ref, kind);
  if (r.kind === 'missing' && !named) return;
  const p = f.resolvedOrReport(r, kind, severity);
  if (p !== undefined) await f.addFile(p, kind);
}

async function inspectDisks(f: VmFindings, vmx: VmxConfig, known: Map<string, VmdkLink[]>, openChains: boolean): Promise<VmDisk[]> {
  const disks: VmDisk[] = [];
  for (const d of vmx.disks) {
    const base = { node: d.node, fileName: d.fileName, format: d.format, mode: d.mode, independent: d.independent };
    if (d.independent) {
      f.problem('INDEPENDENT_DISK', 'warning', `disk ${d.node} (${d.fileName}) is ${d.mode}: snapshots do not cover it; its files are copied as they are, consistent only while the VM is stopped or frozen`, { disk: d.node });
    }
    const r = await resolveVmReference(f, f.vmDir, d.fileName, `disk ${d.node}`);
    const p = f.resolvedOrReport(r, `disk ${d.node}`, 'error', d.node);
    if (p === undefined) {
      disks.push({ ...base, path: null, outside: r.kind === 'outside', included: false, capacity: null, links: [], chain: null });
      continue;
    }
    const outside = r.kind === 'ok' && !r.inside;
    if (d.format === 'chain') {
      const chain = await probeChainDisk(f, d.node, p, openChains);
      disks.push({ ...base, path: p, outside, included: chain !== undefined, capacity: chain?.virtualSize ?? null, links: [], chain: chain ?? null });
    } else {
      const links = await walkVmdkChain(f, d.node, p, known, true);
      disks.push({ ...base, path: p, outside, included: links.length > 0, capacity: links[0]?.capacity ?? null, links, chain: null });
    }
  }
  return disks;
}

async function inspectSnapshots(f: VmFindings, vmsd: Vmsd, disks: VmDisk[], known: Map<string, VmdkLink[]>): Promise<VmSnapshotNode[]> {
  for (const issue of vmsd.issues) f.problem('SNAPSHOT_INCONSISTENT', 'warning', `vmsd: ${issue}`);
  if (vmsd.needConsolidate) f.problem('NEED_CONSOLIDATE', 'warning', 'the vmsd says a consolidation is pending (needConsolidate): delta files were left behind by a failed snapshot deletion');
  const nodes: VmSnapshotNode[] = [];
  const uids = new Set(vmsd.snapshots.map((s) => s.uid));
  for (const s of vmsd.snapshots) {
    let file: string | null = null;
    let memoryFile: string | null = null;
    if (s.fileName !== undefined) {
      const p = f.resolvedOrReport(await resolveVmReference(f, f.vmDir, s.fileName, `state of snapshot ${s.uid}`), `state of snapshot ${s.uid}`, 'warning');
      if (p !== undefined) {
        await f.addFile(p, 'snapshot-state', { immutable: true });
        file = f.name(p);
        const mem = p.replace(/\.vmsn$/i, '.vmem');
        if (mem !== p) {
          // The memory file is found by name, so it passes the guard like any reference; absent is normal.
          const rm = await resolveVmReference(f, f.vmDir, mem, `memory of snapshot ${s.uid}`);
          const pm = rm.kind === 'missing' ? undefined : f.resolvedOrReport(rm, `memory of snapshot ${s.uid}`, 'warning');
          if (pm !== undefined) {
            await f.addFile(pm, 'snapshot-memory', { immutable: true });
            memoryFile = f.name(pm);
          }
        }
      }
    }
    for (const d of s.disks) await checkSnapshotDisk(f, s.uid, d, disks, known);
    nodes.push({
      uid: s.uid,
      name: s.displayName,
      description: s.description,
      created: s.created ?? null,
      parent: s.parent ?? null,
      file,
      memoryFile,
      disks: s.disks.map((d) => ({ node: d.node, fileName: d.fileName, ...(d.chainSnapshot === undefined ? {} : { chainSnapshot: d.chainSnapshot }) })),
      current: vmsd.current === s.uid,
    });
  }
  for (const disk of disks) {
    for (const snap of disk.chain?.snapshots ?? []) {
      const m = VM_SNAPSHOT_DISK_NAME.exec(snap.name);
      if (m !== null && !uids.has(Number(m[1]))) {
        f.problem('ORPHAN_SNAPSHOT', 'warning', `disk ${disk.node}: snapshot ${snap.name} belongs to no VM snapshot in the vmsd; when an interrupted vm snapshot create or delete left it, the next vm snapshot command removes it`, { disk: disk.node });
      }
    }
  }
  return nodes;
}

async function checkSnapshotDisk(f: VmFindings, uid: number, d: Vmsd['snapshots'][number]['disks'][number], disks: VmDisk[], known: Map<string, VmdkLink[]>): Promise<void> {
  const disk = disks.find((x) => x.node === d.node);
  if (d.chainSnapshot !== undefined) {
    if (disk?.chain === null || disk === undefined) {
      f.problem('SNAPSHOT_INCONSISTENT', 'error', `snapshot ${uid} names a chain snapshot of ${d.node}, which is not a chain disk of this VM`, { disk: d.node });
    } else if (!disk.chain.snapshots.some((x) => x.id === d.chainSnapshot)) {
      f.problem('SNAPSHOT_INCONSISTENT', 'error', `snapshot ${uid}: disk ${d.node} (${disk.fileName}) has no snapshot ${d.chainSnapshot}`, { disk: d.node });
    }
    return;
  }
  const r = await resolveVmReference(f, f.vmDir, d.fileName, `disk ${d.node} of snapshot ${uid}`);
  if (r.kind === 'outside' && disk?.outside === true) return; // reported with the disk
  const p = f.resolvedOrReport(r, `disk ${d.node} of snapshot ${uid}`, 'error', d.node);
  if (p === undefined) return;
  if (disk?.links[0]?.path === p) {
    f.problem('SNAPSHOT_INCONSISTENT', 'warning', `snapshot ${uid}: disk ${d.node} runs on ${f.name(p)} itself, the file that should hold the snapshot's state: the disk is not covered by snapshot ${uid}`, { disk: d.node });
    return;
  }
  if (!known.has(p)) await walkVmdkChain(f, d.node, p, known, false);
}
