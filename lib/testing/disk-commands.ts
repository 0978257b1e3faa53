/**
 * fast-check commands that drive a real Disk and a DiskModel with the same
 * operations and compare every read.
 *
 * Use them with `fc.commands(diskCommands(...))` and `fc.asyncModelRun`; see the
 * README for a complete example. Reads are compared byte for byte; any difference
 * fails with the offsets and the operation sequence that led there.
 */
import fc from 'fast-check';
import { Disk, type OpenDiskOptions } from '../chain/disk.js';
import { DiskModel } from './disk-model.js';

/** The system under test: a disk that commands may close and reopen. */
export interface RealDisk {
  disk: Disk;
  readonly path: string;
  readonly options: OpenDiskOptions;
}

export type DiskCommand = fc.AsyncCommand<DiskModel, RealDisk>;

function hex(a: Uint8Array, at: number): string {
  return Buffer.from(a.subarray(at, at + 16)).toString('hex');
}

/** Throws unless `actual` equals `expected`, naming the first differing offset. */
export function assertSameBytes(actual: Uint8Array, expected: Uint8Array, what: string): void {
  if (actual.length !== expected.length) throw new Error(`${what}: read ${actual.length} bytes, expected ${expected.length}`);
  for (let i = 0; i < actual.length; i++) {
    if (actual[i] !== expected[i]) {
      throw new Error(`${what}: first difference at +${i}: got ${hex(actual, i)}…, expected ${hex(expected, i)}…`);
    }
  }
}

export class WriteCommand implements DiskCommand {
  constructor(readonly offset: number, readonly data: Uint8Array) {}
  check = (): boolean => true;
  async run(m: DiskModel, r: RealDisk): Promise<void> {
    await r.disk.write(this.offset, this.data);
    m.write(this.offset, this.data);
  }
  toString = (): string => `write(${this.offset}, ${this.data.length}B #${this.data[0] ?? 0})`;
}

export class ZeroCommand implements DiskCommand {
  constructor(readonly offset: number, readonly length: number, readonly discard: boolean) {}
  check = (): boolean => true;
  async run(m: DiskModel, r: RealDisk): Promise<void> {
    if (this.discard) await r.disk.discard(this.offset, this.length);
    else await r.disk.writeZeroes(this.offset, this.length);
    m.zero(this.offset, this.length);
  }
  toString = (): string => `${this.discard ? 'discard' : 'zero'}(${this.offset}, ${this.length})`;
}

export class ReadCommand implements DiskCommand {
  constructor(readonly offset: number, readonly length: number) {}
  check = (): boolean => true;
  async run(m: DiskModel, r: RealDisk): Promise<void> {
    assertSameBytes(await r.disk.read(this.offset, this.length), m.read(this.offset, this.length), `read(${this.offset}, ${this.length})`);
  }
  toString = (): string => `read(${this.offset}, ${this.length})`;
}

export class FlushCommand implements DiskCommand {
  check = (): boolean => true;
  async run(m: DiskModel, r: RealDisk): Promise<void> {
    await r.disk.flush();
    m.flush();
  }
  toString = (): string => 'flush';
}

export class SnapshotCommand implements DiskCommand {
  constructor(readonly name: string) {}
  check = (m: Readonly<DiskModel>): boolean => !m.hasSnapshot(this.name);
  async run(m: DiskModel, r: RealDisk): Promise<void> {
    await r.disk.snapshot(this.name);
    m.snapshot(this.name);
  }
  toString = (): string => `snapshot(${this.name})`;
}

export class BookmarkCommand implements DiskCommand {
  constructor(readonly name: string) {}
  check = (m: Readonly<DiskModel>): boolean => !m.hasSnapshot(this.name);
  async run(m: DiskModel, r: RealDisk): Promise<void> {
    await r.disk.bookmark(this.name);
    m.bookmark(this.name);
  }
  toString = (): string => `bookmark(${this.name})`;
}

/** After an operation that may drop bookmarks (a merge moving their rows, a revert discarding them). */
function forgetLost(m: DiskModel, r: RealDisk): void {
  m.forgetLostBookmarks(new Set(r.disk.snapshots().filter((s) => s.bookmark).map((s) => s.name)));
}

export class RevertCommand implements DiskCommand {
  constructor(readonly name: string, readonly keepCurrentAs?: string) {}
  check = (m: Readonly<DiskModel>): boolean =>
    m.hasSnapshot(this.name) && !m.isBookmark(this.name) && (this.keepCurrentAs === undefined || !m.hasSnapshot(this.keepCurrentAs));
  async run(m: DiskModel, r: RealDisk): Promise<void> {
    await r.disk.revert(this.name, this.keepCurrentAs === undefined ? {} : { keepCurrentAs: this.keepCurrentAs });
    m.revert(this.name, this.keepCurrentAs);
    forgetLost(m, r);
  }
  toString = (): string => `revert(${this.name}${this.keepCurrentAs === undefined ? '' : `, keep as ${this.keepCurrentAs}`})`;
}

export class DeleteSnapshotCommand implements DiskCommand {
  constructor(readonly name: string) {}
  check = (m: Readonly<DiskModel>): boolean => m.hasSnapshot(this.name);
  async run(m: DiskModel, r: RealDisk): Promise<void> {
    await r.disk.deleteSnapshot(this.name);
    m.deleteSnapshot(this.name);
    forgetLost(m, r);
  }
  toString = (): string => `deleteSnapshot(${this.name})`;
}

export class ConsolidateCommand implements DiskCommand {
  check = (): boolean => true;
  async run(m: DiskModel, r: RealDisk): Promise<void> {
    await r.disk.consolidate();
    forgetLost(m, r);
  }
  toString = (): string => 'consolidate';
}

/**
 * Checks the disk's files (every block's checksum included) while it is open; the
 * disk must be clean whatever happened before.
 */
export class CheckCommand implements DiskCommand {
  check = (): boolean => true;
  async run(_m: DiskModel, r: RealDisk): Promise<void> {
    const report = await Disk.check(r.path, { ...(r.options.fs ? { fs: r.options.fs } : {}), readData: true });
    if (report.result !== 'clean') {
      throw new Error(`check is ${report.result}: ${report.findings.map((f) => f.message).join('; ')}`);
    }
  }
  toString = (): string => 'check';
}

/** Compacts every layer holding any overwritten data. */
export class CompactCommand implements DiskCommand {
  check = (): boolean => true;
  async run(_m: DiskModel, r: RealDisk): Promise<void> {
    await r.disk.compact(0.0001);
  }
  toString = (): string => 'compact';
}

/** The offline dedup pass over every layer. */
export class DedupCommand implements DiskCommand {
  check = (): boolean => true;
  async run(_m: DiskModel, r: RealDisk): Promise<void> {
    await r.disk.dedupAll();
  }
  toString = (): string => 'dedup';
}

/** Consolidation with a depth cap. */
export class ConsolidateDepthCommand implements DiskCommand {
  constructor(readonly maxDepth: number) {}
  check = (): boolean => true;
  async run(m: DiskModel, r: RealDisk): Promise<void> {
    await r.disk.consolidate({ maxDepth: this.maxDepth });
    forgetLost(m, r);
  }
  toString = (): string => `consolidate(maxDepth ${this.maxDepth})`;
}

/** Reads a snapshot through openSnapshot and compares it with the model, whole. */
export class ReadSnapshotCommand implements DiskCommand {
  constructor(readonly name: string) {}
  check = (m: Readonly<DiskModel>): boolean => m.hasSnapshot(this.name);
  async run(m: DiskModel, r: RealDisk): Promise<void> {
    const reader = await r.disk.openSnapshot(this.name);
    try {
      assertSameBytes(await reader.read(0, reader.virtualSize), m.read(0, m.virtualSize, this.name), `snapshot ${this.name}`);
    } finally {
      await reader.close();
    }
  }
  toString = (): string => `readSnapshot(${this.name})`;
}

/**
 * The change map between two points in time (a snapshot or bookmark, or the current
 * state) lists every block whose content differs between them (a superset is allowed).
 */
export class ChangedBlocksCommand implements DiskCommand {
  constructor(readonly from: string, readonly to: string | undefined) {}
  check = (m: Readonly<DiskModel>): boolean => m.hasSnapshot(this.from) && (this.to === undefined || m.hasSnapshot(this.to));
  async run(m: DiskModel, r: RealDisk): Promise<void> {
    const listed = new Set(await r.disk.changedBlocks(this.from, this.to));
    const bs = m.blockSize;
    for (let b = 0; b * bs < m.virtualSize; b++) {
      const n = Math.min(bs, m.virtualSize - b * bs);
      const x = m.read(b * bs, n, this.from);
      const y = m.read(b * bs, n, this.to);
      if (!listed.has(b) && Buffer.compare(x, y) !== 0) throw new Error(`changedBlocks(${this.from}, ${this.to ?? 'current'}) misses block ${b}`);
    }
  }
  toString = (): string => `changedBlocks(${this.from}, ${this.to ?? 'current'})`;
}

/** Closes the disk and opens it again from the files, then compares everything. */
export class ReopenCommand implements DiskCommand {
  check = (): boolean => true;
  async run(m: DiskModel, r: RealDisk): Promise<void> {
    await r.disk.close();
    r.disk = await Disk.open(r.path, r.options);
    assertSameBytes(await r.disk.read(0, m.virtualSize), m.read(0, m.virtualSize), 'after reopen');
    for (const name of m.snapshotNames) {
      const reader = await r.disk.openSnapshot(name);
      try {
        assertSameBytes(await reader.read(0, reader.virtualSize), m.read(0, m.virtualSize, name), `snapshot ${name} after reopen`);
      } finally {
        await reader.close();
      }
    }
  }
  toString = (): string => 'reopen';
}

export interface DiskCommandOptions {
  readonly virtualSize: number;
  readonly blockSize: number;
  /** Snapshot names are drawn from this many (a small pool makes reverts and deletes likely). */
  readonly names?: number;
  /** Include consolidate, compact and dedup commands (default true). */
  readonly consolidate?: boolean;
  /** Include reopen commands (default true). */
  readonly reopen?: boolean;
  /**
   * Include bookmark commands (default false). A revert or a merge may drop a
   * bookmark, which the built-in commands reconcile with the model after them; a
   * command of your own that reverts or deletes snapshots would have to do the same
   * (`DiskModel.forgetLostBookmarks`), so bookmarks are asked for explicitly.
   */
  readonly bookmarks?: boolean;
}

/**
 * Arbitraries of every disk command, sized for collisions: offsets cluster around
 * block boundaries so partial blocks, runs and overwrites all happen often.
 */
export function diskCommands(o: DiskCommandOptions): fc.Arbitrary<DiskCommand>[] {
  const bs = o.blockSize;
  const size = o.virtualSize;
  const names = Array.from({ length: o.names ?? 4 }, (_, i) => `s${i}`);
  const name = fc.constantFrom(...names);
  const blockAligned = fc.integer({ min: 0, max: Math.ceil(size / bs) - 1 }).map((b) => b * bs);
  const offset = fc.oneof(
    blockAligned,
    fc.tuple(blockAligned, fc.integer({ min: -64, max: 64 })).map(([b, d]) => Math.min(size - 1, Math.max(0, b + d))),
    fc.integer({ min: 0, max: size - 1 }),
  );
  const range = offset.chain((off) =>
    fc.oneof(fc.integer({ min: 1, max: Math.min(size - off, 3 * bs) }), fc.constant(Math.min(size - off, bs))).map((len) => [off, len] as const),
  );
  const data = (len: number): fc.Arbitrary<Uint8Array> =>
    fc.oneof(
      fc.integer({ min: 1, max: 255 }).map((v) => new Uint8Array(len).fill(v)),
      fc.constant(new Uint8Array(len)),
      fc.uint8Array({ minLength: len, maxLength: len }),
    );
  const cmds: fc.Arbitrary<DiskCommand>[] = [
    range.chain(([off, len]) => data(len).map((d) => new WriteCommand(off, d))),
    range.chain(([off, len]) => data(len).map((d) => new WriteCommand(off, d))),
    range.map(([off, len]) => new ZeroCommand(off, len, false)),
    range.map(([off, len]) => new ZeroCommand(off, len, true)),
    range.map(([off, len]) => new ReadCommand(off, len)),
    fc.constant(new FlushCommand()),
    name.map((n) => new SnapshotCommand(n)),
    fc.tuple(name, fc.option(name, { nil: undefined })).map(([a, b]) => new ChangedBlocksCommand(a, b)),
    name.map((n) => new RevertCommand(n)),
    fc.tuple(name, name).map(([n, k]) => new RevertCommand(n, k)),
    name.map((n) => new DeleteSnapshotCommand(n)),
    name.map((n) => new ReadSnapshotCommand(n)),
  ];
  if (o.bookmarks ?? false) cmds.push(name.map((n) => new BookmarkCommand(n)));
  if (o.consolidate ?? true) {
    cmds.push(fc.constant(new ConsolidateCommand()));
    cmds.push(fc.integer({ min: 1, max: 4 }).map((n) => new ConsolidateDepthCommand(n)));
    cmds.push(fc.constant(new CompactCommand()));
    cmds.push(fc.constant(new DedupCommand()));
  }
  cmds.push(fc.constant(new CheckCommand()));
  if (o.reopen ?? true) cmds.push(fc.constant(new ReopenCommand()));
  return cmds;
}
