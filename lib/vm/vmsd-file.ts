/**
 * A `.vmsd` file (VMware's snapshot database): parsing into a snapshot tree, and
 * writing one back.
 *
 * Pure (no I/O). The slot index N of `snapshotN.*` is only a position in the file,
 * never the snapshot's identity: the identity is `snapshotN.uid`, and slots may
 * exceed 9 (prefixes are matched on whole numbers, so `snapshot1.` never reads
 * `snapshot10.`'s keys). An empty file is a VM never snapshotted. Inconsistencies
 * (duplicate uids, unknown parents, a cycle, `numSnapshots` disagreeing with the
 * records, `current` naming nothing) are listed in `issues`, not guessed away.
 * Keys we do not interpret are kept (`extra`) so that rewriting a file loses nothing.
 */
import { DeltaDiskError } from '../errors.js';
import { encodeKeyValueText, kvBool, parseKeyValueFile, type KvDocument } from './kv-text.js';

export const MAX_VMSD_BYTES = 8 * 1024 * 1024;
export const MAX_VMSD_SNAPSHOTS = 4096;
export const MAX_SNAPSHOT_DISKS = 1024;

export interface VmsdDisk {
  /** Device node, lower-cased (`scsi0:0`). */
  readonly node: string;
  /** The file that holds this snapshot's point-in-time state of the disk. */
  readonly fileName: string;
  /** For deltadisk chain disks: the id of the disk snapshot (our extension key). */
  readonly chainSnapshot: string | undefined;
}

export interface VmsdSnapshot {
  readonly uid: number;
  readonly parent: number | undefined;
  /** The `.vmsn` file. */
  readonly fileName: string | undefined;
  readonly displayName: string;
  readonly description: string;
  /** ISO 8601, from createTimeHigh/Low (microseconds since the epoch), or undefined. */
  readonly created: string | undefined;
  readonly type: string | undefined;
  readonly disks: readonly VmsdDisk[];
  /** Keys of this record we do not interpret, without the `snapshotN.` prefix. */
  readonly extra: readonly (readonly [string, string])[];
}

export interface Vmsd {
  readonly lastUID: number;
  readonly current: number | undefined;
  readonly needConsolidate: boolean;
  readonly snapshots: readonly VmsdSnapshot[];
  /** Global keys we do not interpret (`snapshot.mru0.uid` …), as written. */
  readonly extra: readonly (readonly [string, string])[];
  readonly issues: readonly string[];
  /** The parsed text, when this came from a file. */
  readonly doc?: KvDocument;
}

export const EMPTY_VMSD: Vmsd = { lastUID: 0, current: undefined, needConsolidate: false, snapshots: [], extra: [], issues: [] };

const SLOT_KEY = /^snapshot(\d{1,9})\.(.+)$/;
const DISK_KEY = /^disk(\d{1,6})\.(filename|node|chainsnapshot)$/;

function toUint(v: string | undefined): number | undefined {
  if (v === undefined || !/^\s*\d{1,10}\s*$/.test(v)) return undefined;
  const n = Number(v);
  return n <= 0xffffffff ? n : undefined;
}

/** createTimeHigh/Low → ISO time. Low is written as a signed 32-bit number. */
export function decodeCreateTime(high: string | undefined, low: string | undefined): string | undefined {
  if (high === undefined || low === undefined || !/^-?\d{1,10}$/.test(high.trim()) || !/^-?\d{1,10}$/.test(low.trim())) return undefined;
  const h = BigInt(high.trim());
  const l = BigInt(low.trim());
  if (h < -(2n ** 31n) || h >= 2n ** 32n || l < -(2n ** 31n) || l >= 2n ** 32n) return undefined;
  const micros = (BigInt.asUintN(32, h) << 32n) + BigInt.asUintN(32, l);
  const ms = Number(micros / 1000n);
  const d = new Date(ms);
  return Number.isNaN(d.getTime()) ? undefined : d.toISOString();
}

/** ISO time → createTimeHigh/Low strings (Low signed, as VMware writes it). */
export function encodeCreateTime(iso: string): { high: string; low: string } {
  const micros = BigInt(Date.parse(iso)) * 1000n;
  const high = micros >> 32n;
  const low = BigInt.asIntN(32, micros & 0xffffffffn);
  return { high: high.toString(), low: low.toString() };
}

/**
 * Parses a `.vmsd` file (an empty file gives an empty tree).
 * @throws LIMIT_EXCEEDED (size, snapshot or disk count), VM_INVALID (undecodable)
 */
export function parseVmsd(bytes: Uint8Array, what = 'vmsd file'): Vmsd {
  const doc = parseKeyValueFile(bytes, MAX_VMSD_BYTES, what);
  const issues: string[] = [];
  const slots = new Map<number, Map<string, string>>();
  const extra: [string, string][] = [];
  let lastUID: number | undefined;
  let current: number | undefined;
  let numSnapshots: number | undefined;
  let needConsolidate = false;
  for (const [lower, entry] of doc.byKey) {
    const m = SLOT_KEY.exec(lower);
    if (m !== null) {
      const slot = Number(m[1]);
      let rec = slots.get(slot);
      if (rec === undefined) {
        if (slots.size >= MAX_VMSD_SNAPSHOTS) throw new DeltaDiskError('LIMIT_EXCEEDED', `${what} has more than ${MAX_VMSD_SNAPSHOTS} snapshot records`);
        rec = new Map();
        slots.set(slot, rec);
      }
      rec.set(m[2]!, entry.value);
      continue;
    }
    if (lower === 'snapshot.lastuid') lastUID = toUint(entry.value);
    else if (lower === 'snapshot.current') current = toUint(entry.value);
    else if (lower === 'snapshot.numsnapshots') numSnapshots = toUint(entry.value);
    else if (lower === 'snapshot.needconsolidate') needConsolidate = kvBool(entry.value) === true;
    else if (lower !== '.encoding') extra.push([entry.key, entry.value]);
  }
  const snapshots: VmsdSnapshot[] = [];
  for (const [slot, rec] of [...slots].sort((a, b) => a[0] - b[0])) {
    const uid = toUint(rec.get('uid'));
    if (uid === undefined) {
      issues.push(`snapshot${slot} has no valid uid and is ignored`);
      continue;
    }
    snapshots.push(parseRecord(slot, uid, rec, issues, what));
  }
  checkTree(snapshots, current, issues);
  if (numSnapshots !== undefined && numSnapshots !== snapshots.length) {
    issues.push(`snapshot.numSnapshots says ${numSnapshots}, the file holds ${snapshots.length} records`);
  }
  const maxUid = snapshots.reduce((m, s) => Math.max(m, s.uid), 0);
  if (lastUID !== undefined && lastUID < maxUid) issues.push(`snapshot.lastUID ${lastUID} is below the highest uid in use (${maxUid})`);
  for (const dup of doc.duplicates) issues.push(`key ${dup} is given more than once; the last value is used`);
  if (doc.invalidLines.length > 0) issues.push(`lines ${doc.invalidLines.slice(0, 10).join(', ')} cannot be parsed and are ignored`);
  return { lastUID: Math.max(lastUID ?? 0, maxUid), current, needConsolidate, snapshots, extra, issues, doc };
}

function parseRecord(slot: number, uid: number, rec: Map<string, string>, issues: string[], what: string): VmsdSnapshot {
  const disks = new Map<number, { fileName?: string; node?: string; chainSnapshot?: string }>();
  const extra: [string, string][] = [];
  for (const [k, v] of rec) {
    const dm = DISK_KEY.exec(k);
    if (dm !== null) {
      const idx = Number(dm[1]);
      let d = disks.get(idx);
      if (d === undefined) {
        if (disks.size >= MAX_SNAPSHOT_DISKS) throw new DeltaDiskError('LIMIT_EXCEEDED', `${what}: snapshot${slot} lists more than ${MAX_SNAPSHOT_DISKS} disks`);
        d = {};
        disks.set(idx, d);
      }
      if (dm[2] === 'filename') d.fileName = v;
      else if (dm[2] === 'node') d.node = v.toLowerCase();
      else d.chainSnapshot = v;
    } else if (!['uid', 'parent', 'filename', 'displayname', 'description', 'createtimehigh', 'createtimelow', 'type', 'numdisks'].includes(k)) {
      extra.push([k, v]);
    }
  }
  const list: VmsdDisk[] = [];
  for (const [idx, d] of [...disks].sort((a, b) => a[0] - b[0])) {
    if (d.fileName === undefined || d.node === undefined) {
      issues.push(`snapshot uid ${uid}: disk${idx} lacks a fileName or node and is ignored`);
      continue;
    }
    list.push({ node: d.node, fileName: d.fileName, chainSnapshot: d.chainSnapshot });
  }
  const numDisks = toUint(rec.get('numdisks'));
  if (numDisks !== undefined && numDisks !== list.length) issues.push(`snapshot uid ${uid}: numDisks says ${numDisks}, ${list.length} disks are listed`);
  const parentRaw = rec.get('parent');
  const parent = toUint(parentRaw);
  if (parentRaw !== undefined && parent === undefined) issues.push(`snapshot uid ${uid}: parent ${JSON.stringify(parentRaw)} is not a uid`);
  return {
    uid,
    parent,
    fileName: rec.get('filename'),
    displayName: rec.get('displayname') ?? '',
    description: rec.get('description') ?? '',
    created: decodeCreateTime(rec.get('createtimehigh'), rec.get('createtimelow')),
    type: rec.get('type'),
    disks: list,
    extra,
  };
}

function checkTree(snapshots: VmsdSnapshot[], current: number | undefined, issues: string[]): void {
  const byUid = new Map<number, VmsdSnapshot>();
  for (const s of snapshots) {
    if (byUid.has(s.uid)) issues.push(`uid ${s.uid} is used by more than one snapshot record`);
    byUid.set(s.uid, s);
  }
  for (const s of snapshots) {
    if (s.parent !== undefined && !byUid.has(s.parent)) issues.push(`snapshot uid ${s.uid} names the unknown parent ${s.parent}`);
    const seen = new Set<number>();
    for (let p: VmsdSnapshot | undefined = s; p?.parent !== undefined; p = byUid.get(p.parent)) {
      if (seen.has(p.uid)) {
        issues.push(`the parent links of snapshot uid ${s.uid} form a cycle`);
        break;
      }
      seen.add(p.uid);
    }
  }
  if (current !== undefined && current !== 0 && !byUid.has(current)) issues.push(`snapshot.current names the unknown uid ${current}`);
}

/** Writes a vmsd: global keys, then one record per snapshot in slots 0…n-1, keeping unknown keys. */
export function encodeVmsd(v: Vmsd): Buffer {
  const out: [string, string][] = [['.encoding', 'UTF-8']];
  out.push(['snapshot.lastUID', String(v.lastUID)]);
  if (v.current !== undefined) out.push(['snapshot.current', String(v.current)]);
  out.push(['snapshot.numSnapshots', String(v.snapshots.length)]);
  if (v.needConsolidate) out.push(['snapshot.needConsolidate', 'TRUE']);
  for (const e of v.extra) out.push([e[0], e[1]]);
  v.snapshots.forEach((s, i) => {
    const p = `snapshot${i}`;
    out.push([`${p}.uid`, String(s.uid)]);
    if (s.fileName !== undefined) out.push([`${p}.filename`, s.fileName]);
    if (s.parent !== undefined) out.push([`${p}.parent`, String(s.parent)]);
    out.push([`${p}.displayName`, s.displayName]);
    if (s.description !== '') out.push([`${p}.description`, s.description]);
    if (s.type !== undefined) out.push([`${p}.type`, s.type]);
    if (s.created !== undefined) {
      const t = encodeCreateTime(s.created);
      out.push([`${p}.createTimeHigh`, t.high], [`${p}.createTimeLow`, t.low]);
    }
    out.push([`${p}.numDisks`, String(s.disks.length)]);
    s.disks.forEach((d, j) => {
      out.push([`${p}.disk${j}.fileName`, d.fileName], [`${p}.disk${j}.node`, d.node]);
      if (d.chainSnapshot !== undefined) out.push([`${p}.disk${j}.chainSnapshot`, d.chainSnapshot]);
    });
    for (const e of s.extra) out.push([`${p}.${e[0]}`, e[1]]);
  });
  return encodeKeyValueText(out);
}
