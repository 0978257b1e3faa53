/**
 * What a served disk offers over NBD: its current state under one export name
 * (read-write unless served read-only, and also as the default export ""), and
 * every snapshot, read-only, under the snapshot's own name.
 *
 * It is also the one place that changes the disk's snapshot tree while it is
 * served, so those changes are ordered with everything else:
 *  - a snapshot runs inside the WriteGate's frozen section: between requests, with
 *    no write half done, and the current export carries on in the new active layer;
 *  - snapshot, delete and the opening of snapshot exports are serialized, so an
 *    export never opens a snapshot that is being merged away under it. An export
 *    already open keeps reading its snapshot even after the snapshot is deleted.
 */
import { DeltaDiskError } from '../errors.js';
import type { Disk, SnapshotInfo } from '../chain/disk.js';
import type { DiskReader } from '../chain/disk-reader.js';
import { MAX_IO_LENGTH } from '../format/limits.js';
import { Mutex } from '../io/mutex.js';
import { STATE_HOLE, STATE_ZERO } from './constants.js';
import { WriteGate } from './write-gate.js';

export interface ExportInfo {
  readonly name: string;
  readonly description: string;
  readonly size: number;
  /** The disk's block size: the preferred request size. */
  readonly blockSize: number;
  readonly readOnly: boolean;
  /** The snapshot this export shows, or undefined for the current state. */
  readonly snapshot: string | undefined;
}

/** An export opened for one connection. */
export interface NbdExport extends ExportInfo {
  /** Fills `target` with the export's bytes at `offset` (range checked by the caller). */
  readInto(target: Buffer, offset: number): Promise<void>;
  /** base:allocation flags of one block. */
  statusFlags(block: number): number;
  write(offset: number, data: Uint8Array, fua: boolean): Promise<void>;
  writeZeroes(offset: number, length: number, fua: boolean): Promise<void>;
  trim(offset: number, length: number, fua: boolean): Promise<void>;
  flush(): Promise<void>;
  /** Gives back what the export holds (a snapshot's reader); idempotent. */
  release(): Promise<void>;
}

/** What the connection code needs from whatever it serves. */
export interface ExportCatalog {
  list(): ExportInfo[];
  find(name: string): ExportInfo | undefined;
  /** Opens an export for a connection; undefined when there is none by that name (any more). */
  open(name: string): Promise<NbdExport | undefined>;
}

export interface DiskExportsOptions {
  /** Serve the current state read-only. Forced when the disk itself is open read-only. */
  readonly readOnly?: boolean;
  /** The current state's export name; it also answers to the default name "". */
  readonly exportName?: string;
}

export interface LiveSnapshot {
  readonly snapshot: SnapshotInfo;
  /** How long writes were held back: waiting for those in flight, plus taking the snapshot. */
  readonly freezeMs: number;
  /** The part of freezeMs spent waiting for writes in flight. */
  readonly drainMs: number;
}

function readOnlyError(name: string): DeltaDiskError {
  return new DeltaDiskError('READ_ONLY', `export ${JSON.stringify(name)} is read-only`);
}

export class DiskExports implements ExportCatalog {
  readonly disk: Disk;
  readonly exportName: string;
  readonly readOnly: boolean;
  readonly gate = new WriteGate();
  /** Orders tree changes with the opening of snapshot exports. */
  readonly #tree = new Mutex();

  constructor(disk: Disk, options: DiskExportsOptions = {}) {
    this.disk = disk;
    this.exportName = options.exportName ?? '';
    this.readOnly = disk.readOnly || options.readOnly === true;
    if (disk.snapshots().some((s) => s.name === this.exportName)) {
      throw new DeltaDiskError(
        'INVALID_ARGUMENT',
        `export name ${JSON.stringify(this.exportName)} is also a snapshot's name; choose another with --export-name`,
      );
    }
  }

  get #hasBase(): boolean {
    return this.disk.descriptor.base !== null;
  }

  #info(snapshot: SnapshotInfo | undefined): ExportInfo {
    const d = this.disk;
    if (snapshot === undefined) {
      return {
        name: this.exportName,
        description: `current state of ${d.path}${this.readOnly ? ' (read-only)' : ''}`,
        size: d.virtualSize,
        blockSize: d.blockSize,
        readOnly: this.readOnly,
        snapshot: undefined,
      };
    }
    return {
      name: snapshot.name,
      description: `snapshot of ${d.path} taken ${snapshot.created}${snapshot.description ? `: ${snapshot.description}` : ''}`,
      size: d.virtualSize,
      blockSize: d.blockSize,
      readOnly: true,
      snapshot: snapshot.name,
    };
  }

  list(): ExportInfo[] {
    return [this.#info(undefined), ...this.disk.snapshots().map((s) => this.#info(s))];
  }

  find(name: string): ExportInfo | undefined {
    if (name === this.exportName || name === '') return this.#info(undefined);
    const snap = this.disk.snapshots().find((s) => s.name === name);
    return snap === undefined ? undefined : this.#info(snap);
  }

  async open(name: string): Promise<NbdExport | undefined> {
    const info = this.find(name);
    if (info === undefined) return undefined;
    if (info.snapshot === undefined) return this.#current(info);
    const reader = await this.#tree.run(async () => {
      if (this.find(name)?.snapshot === undefined) return undefined;
      return this.disk.openSnapshot(name);
    });
    return reader === undefined ? undefined : this.#snapshot(info, reader);
  }

  /**
   * Takes a snapshot between requests (see the file comment).
   * @throws INVALID_ARGUMENT when the name is the current export's, and what Disk.snapshot throws.
   */
  async snapshot(name: string, description = ''): Promise<LiveSnapshot> {
    if (name === this.exportName) {
      throw new DeltaDiskError('INVALID_ARGUMENT', `${JSON.stringify(name)} is the name of the served export; a snapshot needs another`);
    }
    return this.#tree.run(async () => {
      // Flushing first leaves the snapshot's own fsync of the active layer little to do while writes wait.
      if (!this.disk.readOnly) await this.disk.flush();
      const { result, freezeMs, drainMs } = await this.gate.frozen(() => this.disk.snapshot(name, description));
      return { snapshot: result, freezeMs, drainMs };
    });
  }

  /** Deletes a snapshot; exports open on it keep reading it until they close. */
  async deleteSnapshot(name: string): Promise<void> {
    await this.#tree.run(() => this.disk.deleteSnapshot(name));
  }

  #current(info: ExportInfo): NbdExport {
    const disk = this.disk;
    const gate = this.gate;
    const readOnly = info.readOnly;
    const hasBase = this.#hasBase;
    const reader = disk.currentReader();
    const guard = (): void => {
      if (readOnly) throw readOnlyError(info.name);
    };
    return {
      ...info,
      readInto: (target, offset) => disk.readInto(target, offset),
      statusFlags: (block) => flagsOf(reader, block, hasBase),
      async write(offset, data, fua) {
        guard();
        await gate.write(() => disk.write(offset, data));
        if (fua) await disk.flush();
      },
      async writeZeroes(offset, length, fua) {
        guard();
        await gate.write(() => inPieces(offset, length, (o, n) => disk.writeZeroes(o, n)));
        if (fua) await disk.flush();
      },
      async trim(offset, length, fua) {
        guard();
        await gate.write(() => inPieces(offset, length, (o, n) => disk.discard(o, n)));
        if (fua) await disk.flush();
      },
      async flush() {
        if (!readOnly) await disk.flush();
      },
      async release() {},
    };
  }

  #snapshot(info: ExportInfo, reader: DiskReader): NbdExport {
    const hasBase = this.#hasBase;
    let released = false;
    const refuse = async (): Promise<never> => {
      throw readOnlyError(info.name);
    };
    return {
      ...info,
      readInto: (target, offset) => reader.readInto(target, offset),
      statusFlags: (block) => flagsOf(reader, block, hasBase),
      write: refuse,
      writeZeroes: refuse,
      trim: refuse,
      async flush() {},
      async release() {
        if (released) return;
        released = true;
        await reader.close();
      },
    };
  }
}

function flagsOf(reader: DiskReader, block: number, hasBase: boolean): number {
  const s = reader.source(block);
  if (s.kind === 'zero' || (s.kind === 'base' && !hasBase)) return STATE_HOLE | STATE_ZERO;
  return 0;
}

/** Runs a length-only operation in pieces the chain accepts (at most MAX_IO_LENGTH each). */
async function inPieces(offset: number, length: number, fn: (offset: number, length: number) => Promise<void>): Promise<void> {
  for (let pos = offset; pos < offset + length; pos += MAX_IO_LENGTH) {
    await fn(pos, Math.min(MAX_IO_LENGTH, offset + length - pos));
  }
}
