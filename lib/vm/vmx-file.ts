/**
 * A `.vmx` file: what deltadisk needs to know from a VM's configuration.
 *
 * Pure (no I/O). Keys are matched case-insensitively; devices are found from
 * `<bus><n>:<unit>.fileName` keys and kept only when both the device and (when it is
 * declared) its controller are present. A device is a disk when its deviceType says
 * so, or, with no deviceType (usual for IDE), when its file name ends in `.vmdk` or
 * `.chain`; CD-ROMs, passthrough devices and `emptyBackingString` are not disks.
 * Paths stay exactly as written: resolving them is the caller's job, through the
 * path guard.
 */
import { kvBool, kvGet, parseKeyValueFile, type KvDocument } from './kv-text.js';

export const MAX_VMX_BYTES = 1024 * 1024;

export type DiskMode = 'persistent' | 'independent-persistent' | 'independent-nonpersistent' | 'nonpersistent' | 'undoable' | string;

export interface VmxDisk {
  /** Device node, lower-cased: `scsi0:1`, `sata0:0`, `ide1:0`, `nvme0:3`. */
  readonly node: string;
  /** The `fileName` value as written (relative to the vmx directory, or absolute). */
  readonly fileName: string;
  /** `.chain` (a deltadisk chain) or `.vmdk`. */
  readonly format: 'chain' | 'vmdk';
  readonly mode: DiskMode;
  /** Independent disks are not part of snapshots. */
  readonly independent: boolean;
  readonly deviceType: string | undefined;
}

export interface VmxConfig {
  readonly doc: KvDocument;
  readonly displayName: string | undefined;
  readonly nvram: string | undefined;
  readonly extendedConfigFile: string | undefined;
  /** `checkpoint.vmState`: the suspend-state file when suspended, else undefined. */
  readonly suspendState: string | undefined;
  readonly swapPath: string | undefined;
  readonly cleanShutdown: boolean | undefined;
  readonly logFile: string | undefined;
  readonly disks: readonly VmxDisk[];
  /** Present devices with a file that are not disks (CD-ROM images …), for reporting. */
  readonly otherDevices: readonly { node: string; fileName: string; deviceType: string | undefined }[];
}

const DEVICE_FILE = /^(scsi|sata|ide|nvme)(\d{1,3}):(\d{1,3})\.filename$/;
const DISK_TYPES = new Set(['scsi-harddisk', 'disk', 'ata-harddisk', 'sata-harddisk', 'nvme-harddisk', 'plaindisk', 'rawdisk']);

/**
 * Parses a `.vmx` file.
 * @throws LIMIT_EXCEEDED (over 1 MiB), VM_INVALID (undecodable)
 */
export function parseVmx(bytes: Uint8Array, what = 'vmx file'): VmxConfig {
  const doc = parseKeyValueFile(bytes, MAX_VMX_BYTES, what);
  const get = (k: string): string | undefined => kvGet(doc, k);
  const disks: VmxDisk[] = [];
  const otherDevices: { node: string; fileName: string; deviceType: string | undefined }[] = [];
  for (const [lower, entry] of doc.byKey) {
    const m = DEVICE_FILE.exec(lower);
    if (m === null) continue;
    const bus = m[1]!;
    const node = `${bus}${Number(m[2])}:${Number(m[3])}`;
    const prefix = lower.slice(0, -'.filename'.length);
    if (kvBool(get(`${prefix}.present`)) !== true) continue;
    if (bus !== 'ide' && kvBool(get(`${bus}${m[2]}.present`)) === false) continue;
    const fileName = entry.value;
    const deviceType = get(`${prefix}.deviceType`);
    const lowerName = fileName.toLowerCase();
    const typed = deviceType === undefined ? undefined : DISK_TYPES.has(deviceType.toLowerCase());
    const isDisk = typed ?? (lowerName.endsWith('.vmdk') || lowerName.endsWith('.chain'));
    if (!isDisk || fileName === '' || lowerName === 'emptybackingstring') {
      if (fileName !== '') otherDevices.push({ node, fileName, deviceType });
      continue;
    }
    const mode = (get(`${prefix}.mode`) ?? 'persistent').toLowerCase();
    disks.push({
      node,
      fileName,
      format: lowerName.endsWith('.chain') ? 'chain' : 'vmdk',
      mode,
      independent: mode.startsWith('independent'),
      deviceType,
    });
  }
  disks.sort((a, b) => compareNodes(a.node, b.node));
  const vmState = get('checkpoint.vmState');
  return {
    doc,
    displayName: get('displayName'),
    nvram: nonEmpty(get('nvram')),
    extendedConfigFile: nonEmpty(get('extendedConfigFile')),
    suspendState: nonEmpty(vmState),
    swapPath: nonEmpty(get('sched.swap.derivedName')),
    cleanShutdown: kvBool(get('cleanShutdown')),
    logFile: nonEmpty(get('log.fileName')),
    disks,
    otherDevices,
  };
}

function nonEmpty(v: string | undefined): string | undefined {
  return v === undefined || v.trim() === '' ? undefined : v;
}

/** Orders device nodes by bus, controller and unit (`scsi0:2` before `scsi0:10`). */
export function compareNodes(a: string, b: string): number {
  const pa = /^([a-z]+)(\d+):(\d+)$/.exec(a);
  const pb = /^([a-z]+)(\d+):(\d+)$/.exec(b);
  if (pa === null || pb === null) return a < b ? -1 : a > b ? 1 : 0;
  if (pa[1] !== pb[1]) return pa[1]! < pb[1]! ? -1 : 1;
  return Number(pa[2]) - Number(pb[2]) || Number(pa[3]) - Number(pb[3]);
}
