/**
 * Damaged and hostile chain files (issue 4): real delta files, descriptors and
 * operation-state records written by the chain, then mutated, each variant opened
 * read-only and writable and read whole.
 *
 * A variant must end in a typed DeltaDiskError or read exactly what the model says.
 * One more ending is legitimate, and only for damage past the log end of a layer's
 * newest header (its unindexed tail): the log ends at the first record that fails
 * its checks, exactly as after a torn append, so the disk reads as it did after an
 * earlier flush ("older log prefix"). Those earlier states are computed from the
 * undamaged files by cutting each tail at each record boundary. And a re-checksummed
 * tail record that the format's own rules accept (it names another block, say) is
 * a forgery no checksum can tell apart: it may be read as written, consistently.
 *
 * The mutations themselves are in chain-delta-mutations.ts (delta files) and
 * chain-metadata-mutations.ts (descriptor and state record).
 */
import { createHash } from 'node:crypto';
import path from 'node:path';
import { Disk } from '../../lib/chain/disk.js';
import { decodeDeltaHeader, DELTA_MAGIC, type DeltaHeader } from '../../lib/format/delta-header.js';
import { decodeDescriptor } from '../../lib/format/descriptor.js';
import { HEADER_SLOT_SIZE, LOG_START } from '../../lib/format/limits.js';
import { decodeOpState } from '../../lib/format/op-state.js';
import { decodeRecordHeader, layerTag, RECORD_HEADER_SIZE, RecordKind } from '../../lib/format/record.js';
import { MemoryFileSystem } from '../../lib/io/memory-file-system.js';
import type { Observed } from './chain-model.js';
import { observe } from './chain-checker.js';
import { steps, type ChainSys } from './chain-steps.js';
import { chainWorkloads, DESCRIPTOR } from './chain-workloads.js';
import { recordWorkload } from './crash-explorer.js';
import { attempt, type AllocationWatch } from './hostile.js';
import { Rng } from './rng.js';
import { Violation } from './workload.js';

export const DIR = '/hostile/vm';
const BS = 4096;
export const SIZE = 16 * BS + 1000;

export type Files = Map<string, Uint8Array>;

export interface RecordInfo {
  readonly at: number;
  readonly kind: number;
  readonly seq: number;
  readonly block: number;
  readonly count: number;
  readonly payloadLength: number;
  readonly end: number;
}

export interface DeltaLayout {
  readonly file: string;
  readonly slots: readonly { readonly used: number; readonly header: DeltaHeader | undefined }[];
  readonly newest: 0 | 1;
  readonly header: DeltaHeader;
  readonly tag: number;
  readonly records: readonly RecordInfo[];
  readonly size: number;
}

export interface ChainFixture {
  readonly name: string;
  readonly files: ReadonlyMap<string, Uint8Array>;
  /** Digest of what the model says the disk reads (current state and every snapshot). */
  readonly expected: string;
  /** Digests of the states a cut of some layer's unindexed tail gives. */
  readonly prefixes: ReadonlySet<string>;
  readonly deltas: readonly DeltaLayout[];
  /** The active layer's file. */
  readonly active: string;
}

export interface Variant {
  readonly structure: string;
  readonly mutation: string;
  /** True when every changed byte lies in a layer's unindexed tail (past its header's log end). */
  readonly inTail: boolean;
  /**
   * True when the mutation, checksums recomputed, yields a structure the format
   * cannot tell from a genuine one (a tail record naming another block): the disk
   * may read it as written, as long as every open reads the same.
   */
  readonly forged?: boolean;
  /** A gap documented by a failing regression test: a wrong read is counted under this name, not as a violation. */
  readonly knownGap?: string;
  make(files: ReadonlyMap<string, Uint8Array>): Files;
}

/**
 * Reads verify block CRCs only with `verifyReads` (docs/DESIGN.md; copies and
 * `check --read-data` always do): test/regressions/block-reads-skip-crc.test.ts.
 */
export const BLOCK_CRC_GAP = 'block data read without verifyReads is not checked against its CRC';

export function digest(o: Observed): string {
  const h = createHash('sha256').update(o.current);
  for (const name of [...o.snapshots.keys()].sort()) h.update(`\0${name}\0`).update(o.snapshots.get(name)!);
  return h.digest('hex');
}

/** The files on a fresh in-memory file system, in DIR. */
export async function load(files: ReadonlyMap<string, Uint8Array>): Promise<MemoryFileSystem> {
  const mem = new MemoryFileSystem();
  await mem.mkdirp(DIR);
  for (const [name, bytes] of files) {
    const h = await mem.open(path.join(DIR, name), 'createExclusive');
    if (bytes.length > 0) await h.write([bytes], 0);
    await h.close();
  }
  return mem;
}

async function readState(files: ReadonlyMap<string, Uint8Array>, readOnly: boolean): Promise<Observed> {
  const mem = await load(files);
  const disk = await Disk.open(path.join(DIR, DESCRIPTOR), { fs: mem, lock: false, readOnly });
  try {
    return await observe(disk);
  } finally {
    await disk.close();
  }
}

function filesOf(mem: MemoryFileSystem, names: readonly string[]): Files {
  return new Map(names.map((n) => [n, mem.readFileSync(path.join(DIR, n))]));
}

/** Parses a delta file's header slots and records (as far as they are intact). */
export function parseDelta(file: string, bytes: Uint8Array): DeltaLayout {
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const slots = [0, 1].map((i) => {
    const slot = b.subarray(i * HEADER_SLOT_SIZE, (i + 1) * HEADER_SLOT_SIZE);
    let header: DeltaHeader | undefined;
    try {
      header = decodeDeltaHeader(slot);
    } catch {
      header = undefined;
    }
    return { used: slot.length >= 20 && slot.subarray(0, 8).equals(DELTA_MAGIC) ? 20 + slot.readUInt32LE(12) : 0, header };
  });
  const newest: 0 | 1 = slots[1]!.header !== undefined && (slots[0]!.header === undefined || slots[1]!.header.generation > slots[0]!.header.generation) ? 1 : 0;
  const header = slots[newest]!.header!;
  const tag = layerTag(header.layerId);
  const records: RecordInfo[] = [];
  let pos = LOG_START;
  for (;;) {
    const rh = decodeRecordHeader(b, pos, tag);
    if (rh === undefined) break;
    const end = pos + RECORD_HEADER_SIZE + rh.payloadLength;
    if (end > b.length) break;
    records.push({ at: pos, kind: rh.kind, seq: rh.seq, block: rh.block, count: rh.count, payloadLength: rh.payloadLength, end });
    pos = end;
  }
  return { file, slots, newest, header, tag, records, size: bytes.length };
}

/** States reachable by cutting one layer's unindexed tail at a record boundary. */
async function prefixStates(files: ReadonlyMap<string, Uint8Array>, deltas: readonly DeltaLayout[]): Promise<Set<string>> {
  const out = new Set<string>();
  for (const d of deltas) {
    const tail = d.records.filter((r) => r.at >= d.header.logEnd);
    if (tail.length === 0) continue;
    for (const cut of [d.header.logEnd, ...tail.map((r) => r.end)]) {
      const copy = new Map(files);
      copy.set(d.file, files.get(d.file)!.slice(0, cut));
      // A cut that leaves the disk unreadable (a reference whose content was in the
      // cut part) is no state to accept; damage there must end in an error.
      const state = await readState(copy, true).catch(() => undefined);
      if (state !== undefined) out.add(digest(state));
    }
  }
  return out;
}

async function finish(name: string, files: Files): Promise<ChainFixture> {
  const d = decodeDescriptor(Buffer.from(files.get(DESCRIPTOR)!).toString('utf8'));
  const deltas = d.layers.map((l) => parseDelta(l.file, files.get(l.file)!));
  const active = d.layers.find((l) => l.id === d.active)!.file;
  const expected = digest(await readState(files, true));
  const prefixes = await prefixStates(files, deltas);
  return { name, files, expected, prefixes, deltas, active };
}

function bytesOf(seed: number, blocks: number): Uint8Array {
  return new Rng(seed).bytes(blocks * BS);
}

/**
 * A disk with every record kind: DATA, ZERO, REF (to its own layer and to an
 * ancestor), BLOB (carried over by a stream merge), map segments in sealed layers,
 * and an active layer with an indexed part and a flushed, unindexed tail. Copied
 * while the disk is open, as a crash would find it.
 */
export async function richFixture(): Promise<ChainFixture> {
  const mem = new MemoryFileSystem();
  await mem.mkdirp(DIR);
  const p = path.join(DIR, DESCRIPTOR);
  const options = { fs: mem, lock: false };
  const sys: ChainSys = { disk: await Disk.create(p, { ...options, size: SIZE, blockSize: BS }), path: p, options };
  const Q = bytesOf(1, 1);
  const R = bytesOf(2, 1);
  const plan = [
    steps.write(0, bytesOf(3, 2)),
    steps.write(3 * BS, Q),
    steps.write(3 * BS, R),
    steps.snapshot('s1'),
    steps.write(6 * BS, bytesOf(4, 8)),
    steps.write(15 * BS, Q),
    steps.zero(0, BS),
    steps.snapshot('s2'),
    steps.deleteSnapshot('s1'), // stream merge: Q carried over as a BLOB
    steps.write(4 * BS, R),
    steps.write(5 * BS + 100, bytesOf(5, 1).subarray(0, 900)),
    steps.snapshot('s3'),
    steps.write(9 * BS, bytesOf(6, 2)),
    steps.reopen(), // indexes the active layer
    steps.write(11 * BS, bytesOf(7, 1)),
    steps.write(12 * BS, bytesOf(3, 1)),
    steps.zero(13 * BS, BS),
    steps.flush(), // acknowledged, but only in the tail
  ];
  for (const s of plan) await s.run(sys);
  const files = filesOf(mem, await mem.readdir(DIR));
  await sys.disk.close();
  return finish('disk with every record kind', files);
}

/**
 * A crash state in the middle of a stream merge, the state record present: in the
 * copy phase before anything was copied (`before copy`, where the record alone
 * drives what happens), or after the descriptor switch (`after switch`).
 */
export async function mergeFixture(phase: 'before copy' | 'after switch'): Promise<ChainFixture> {
  const w = chainWorkloads().find((x) => x.name === 'delete snapshot, stream merge')!;
  const rec = await recordWorkload(w, { dir: DIR });
  for (let point = rec.end; point > 0; point--) {
    const { fs } = rec.fs.crashState(point, { kind: 'keep-all' });
    const live = fs.liveFiles();
    const op = live.get(path.join(DIR, `${DESCRIPTOR}.op`));
    if (op === undefined) continue;
    const files: Files = new Map([...live].map(([p, b]) => [path.basename(p), b]));
    const state = decodeOpState(Buffer.from(op).toString('utf8'));
    const d = decodeDescriptor(Buffer.from(files.get(DESCRIPTOR)!).toString('utf8'));
    const switched = !d.layers.some((l) => l.id === state.removed.id);
    const survivor = parseDelta(state.survivors[0]!.file, files.get(state.survivors[0]!.file)!);
    const copied = survivor.records.some((r) => r.at >= survivor.header.logEnd && r.kind !== RecordKind.PAD);
    if (phase === 'after switch' ? switched && copied : !switched && !copied) return finish(`crash state of a merge, ${phase}`, files);
  }
  throw new Error(`no crash point of a merge ${phase}`);
}

/**
 * Opens the variant read-only and writable, reading everything each time.
 * @returns how each open ended; throws a Violation for any other ending.
 */
export async function runVariant(fx: ChainFixture, v: Variant, o: { timeoutMs?: number; watch?: AllocationWatch; verifyReads?: boolean } = {}): Promise<string[]> {
  const timeoutMs = o.timeoutMs ?? 5000;
  const files = v.make(fx.files);
  const endings: string[] = [];
  const digests: string[] = [];
  // The writable open runs on what the read-only one left: it must change nothing.
  const mem = await load(files);
  for (const readOnly of [true, false]) {
    const mode = readOnly ? 'read-only' : 'writable';
    let seen: Observed | undefined;
    // Only the library's allocations are watched, not the harness's own.
    o.watch?.start();
    const e = await attempt(
      async () => {
        const disk = await Disk.open(path.join(DIR, DESCRIPTOR), { fs: mem, lock: false, readOnly, verifyReads: o.verifyReads ?? false });
        try {
          seen = await observe(disk);
        } finally {
          await disk.close();
        }
      },
      timeoutMs,
      `${mode} open`,
    ).finally(() => o.watch?.stop());
    if (e.kind === 'error') {
      endings.push(`typed error ${e.code}`);
      continue;
    }
    const dg = digest(seen!);
    digests.push(dg);
    if (dg === fx.expected) endings.push('identical to the model');
    else if (v.inTail && fx.prefixes.has(dg)) endings.push('older log prefix (damage in the unindexed tail)');
    else if (v.forged) endings.push('well-formed forgery, read as written');
    else if (v.knownGap !== undefined) endings.push(`known gap: ${v.knownGap}`);
    else throw new Violation(`${mode} open of ${v.structure} with ${v.mutation} read data that is neither the model's nor an error`);
  }
  if (v.forged && digests.length === 2 && digests[0] !== digests[1]) {
    throw new Violation(`${v.structure} with ${v.mutation}: the read-only and the writable open read different data`);
  }
  return endings;
}

/** A change to one file of a set. */
export const withFile = (name: string, fn: (b: Uint8Array) => Uint8Array) => (files: ReadonlyMap<string, Uint8Array>): Files => {
  const out = new Map(files);
  out.set(name, fn(files.get(name)!));
  return out;
};
