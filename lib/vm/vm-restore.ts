/**
 * `restoreVm`: a VM backup back into a directory: the whole VM, or some of its
 * disks (as chains, or flattened to raw images) and files.
 *
 * A VM backup's entries are the VM directory's files at the top level, so the
 * target directory becomes the VM directory. Disks are chosen by device node
 * (`scsi0:0`), vmx file name or entry name; a VMDK disk brings its descriptor and
 * every extent and delta of its chain, a chain disk its `.chain` entry. The work is
 * the repository's restore (verified chunk by chunk, published per file only when
 * complete), so what comes back is byte-identical to the capture.
 */
import { DeltaDiskError } from '../errors.js';
import type { VmRecord } from '../format/vm-record.js';
import { restore, type RestoreOptions, type RestoreResult } from '../repo/restore.js';
import type { Repository } from '../repo/repository.js';

export interface VmRestoreOptions extends Pick<RestoreOptions, 'target' | 'overwrite' | 'verify' | 'flatten' | 'onProgress' | 'onWarning'> {
  /** Restore only these disks (device node, vmx file name or entry name). */
  readonly disks?: readonly string[];
  /** Restore only these files (entry names: the names in the VM directory). */
  readonly files?: readonly string[];
}

export interface VmRestoreResult extends RestoreResult {
  readonly vm: VmRecord;
  /** The entries restored (all of them when no disk or file was named). */
  readonly include: readonly string[] | null;
}

/**
 * @throws BACKUP_NOT_FOUND, INVALID_ARGUMENT (not a VM backup), NOT_FOUND (no such
 *   disk or file in the backup), and restore's errors
 */
export async function restoreVm(repo: Repository, backupId: string, options: VmRestoreOptions): Promise<VmRestoreResult> {
  repo.assertOpen();
  const manifest = await repo.loadManifest(backupId);
  const vm = manifest.vm;
  if (vm === undefined) {
    throw new DeltaDiskError('INVALID_ARGUMENT', `backup ${backupId} is not a VM backup (it was made by \`deltadisk backup\`); restore it with \`deltadisk restore\``);
  }
  const include: string[] = [];
  for (const want of options.disks ?? []) {
    const d = vm.disks.find((x) => x.node === want || x.fileName === want || x.entries.includes(want));
    if (d === undefined) {
      throw new DeltaDiskError('NOT_FOUND', `the backup has no disk ${JSON.stringify(want)}; its disks: ${vm.disks.map((x) => `${x.node} (${x.fileName})`).join(', ') || 'none'}`);
    }
    include.push(...d.entries);
  }
  const names = new Set(manifest.entries.map((e) => e.path));
  for (const want of options.files ?? []) {
    if (!names.has(want)) throw new DeltaDiskError('NOT_FOUND', `the backup has no file ${JSON.stringify(want)} (\`deltadisk ls ${backupId.slice(0, 8)}\` lists them)`);
    include.push(want);
  }
  const selected = include.length > 0 ? [...new Set(include)] : null;
  const result = await restore(repo, backupId, {
    target: options.target,
    ...(selected === null ? {} : { include: selected }),
    ...(options.overwrite === undefined ? {} : { overwrite: options.overwrite }),
    ...(options.verify === undefined ? {} : { verify: options.verify }),
    ...(options.flatten === undefined ? {} : { flatten: options.flatten }),
    ...(options.onProgress === undefined ? {} : { onProgress: options.onProgress }),
    ...(options.onWarning === undefined ? {} : { onWarning: options.onWarning }),
  });
  return { ...result, vm, include: selected };
}
