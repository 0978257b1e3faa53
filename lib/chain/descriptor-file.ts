/**
 * Reading and replacing a chain descriptor file, and naming the files around it.
 *
 * A descriptor is read only if it is a regular file of bounded size; it is replaced
 * only atomically (temp file, fsync, rename, directory fsync), so after any crash it
 * is whole, either old or new.
 */
import path from 'node:path';
import { DeltaDiskError, fromSystemError } from '../errors.js';
import { decodeDescriptor, encodeDescriptor, type Descriptor } from '../format/descriptor.js';
import { MAX_DESCRIPTOR_BYTES } from '../format/limits.js';
import { decodeOpState, encodeOpState, MAX_OP_BYTES, type OpState } from '../format/op-state.js';
import { atomicReplace, createDurable } from '../io/atomic-replace.js';
import type { FileSystem } from '../io/file-system.js';
import { readUpTo } from '../io/positional.js';

export const DESCRIPTOR_SUFFIX = '.chain';
/** The highest delta file number: twelve digits. */
const MAX_LAYER_NUMBER = 10 ** 12 - 1;

/** Names derived from a descriptor path `dir/<stem>.chain`. */
export class DiskPaths {
  readonly descriptor: string;
  readonly dir: string;
  readonly stem: string;

  constructor(descriptorPath: string) {
    this.descriptor = path.resolve(descriptorPath);
    this.dir = path.dirname(this.descriptor);
    const base = path.basename(this.descriptor);
    this.stem = base.endsWith(DESCRIPTOR_SUFFIX) ? base.slice(0, -DESCRIPTOR_SUFFIX.length) : base;
  }

  get opState(): string {
    return `${this.descriptor}.op`;
  }

  /**
   * File name of delta number `n`: `<stem>-000042.delta`. Numbers stop at 12 digits
   * (what `layerNumber` recognises, and the descriptor's `nextLayer` bound): a file
   * beyond would be one no sweep or rebuild could ever find again.
   * @throws CHAIN_CORRUPT past that (reachable only from a crafted `nextLayer`)
   */
  layerFile(n: number): string {
    if (!Number.isSafeInteger(n) || n < 1 || n > MAX_LAYER_NUMBER) {
      throw new DeltaDiskError('CHAIN_CORRUPT', `${this.descriptor}: delta number ${n} is past the last one (${MAX_LAYER_NUMBER})`, { path: this.descriptor });
    }
    return `${this.stem}-${String(n).padStart(6, '0')}.delta`;
  }

  /** The number of a file named like one of our deltas, or undefined. */
  layerNumber(file: string): number | undefined {
    if (!file.startsWith(`${this.stem}-`) || !file.endsWith('.delta')) return undefined;
    const digits = file.slice(this.stem.length + 1, -'.delta'.length);
    return /^\d{6,12}$/.test(digits) ? Number(digits) : undefined;
  }
}

async function readBounded(fs: FileSystem, p: string, max: number, what: string): Promise<string | undefined> {
  let st;
  try {
    st = await fs.lstat(p);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw fromSystemError(err, p, `reading ${what} failed`);
  }
  if (!st.isFile) throw new DeltaDiskError('UNSAFE_PATH', `${what} ${p} is not a regular file`, { path: p });
  if (st.size > max) {
    throw new DeltaDiskError('LIMIT_EXCEEDED', `${what} ${p} is ${st.size} bytes, at most ${max} allowed`, { path: p });
  }
  const handle = await fs.open(p, 'read').catch((err: unknown) => {
    throw fromSystemError(err, p, `reading ${what} failed`);
  });
  try {
    // Sized from the file (one byte more, to see growth), never the 8 MiB cap.
    const bytes = await readUpTo(handle, 0, Math.min(st.size, max) + 1);
    if (bytes.length > max) throw new DeltaDiskError('LIMIT_EXCEEDED', `${what} ${p} exceeds ${max} bytes`, { path: p });
    return bytes.toString('utf8');
  } finally {
    // Read-only: a failing close loses nothing, and what was read stands.
    await handle.close().catch(() => undefined);
  }
}

/** @throws NOT_FOUND, CHAIN_CORRUPT, CHECKSUM_MISMATCH, UNSUPPORTED_VERSION, LIMIT_EXCEEDED */
export async function readDescriptor(fs: FileSystem, p: string): Promise<Descriptor> {
  const text = await readBounded(fs, p, MAX_DESCRIPTOR_BYTES, 'descriptor');
  if (text === undefined) throw new DeltaDiskError('NOT_FOUND', `no disk at ${p}`, { path: p });
  return decodeDescriptor(text, p);
}

/**
 * The bytes of `d`, only if they read back as `d`: a descriptor over the size limit
 * (thousands of long snapshot descriptions) or with a counter carried past its
 * bound (a generation of 2^53 - 1 in a crafted file) is refused here, before
 * anything is written, instead of leaving a disk no open accepts.
 * @throws LIMIT_EXCEEDED, CHAIN_CORRUPT
 */
export function encodeReadable(d: Descriptor, p: string): Buffer {
  const bytes = encodeDescriptor(d);
  if (bytes.length > MAX_DESCRIPTOR_BYTES) {
    throw new DeltaDiskError('LIMIT_EXCEEDED', `the descriptor would be ${bytes.length} bytes, at most ${MAX_DESCRIPTOR_BYTES} allowed (fewer or shorter snapshot descriptions)`, { path: p });
  }
  try {
    decodeDescriptor(bytes.toString('utf8'), p);
  } catch (err) {
    const e = err instanceof DeltaDiskError ? err : new DeltaDiskError('CHAIN_CORRUPT', String(err), { path: p });
    throw new DeltaDiskError(e.code, `refusing to write a descriptor that would not read back: ${e.message}`, { path: p, cause: e });
  }
  return bytes;
}

/** @throws LIMIT_EXCEEDED, CHAIN_CORRUPT (see encodeReadable): nothing was written */
export async function replaceDescriptor(fs: FileSystem, p: string, d: Descriptor): Promise<void> {
  await atomicReplace(fs, p, encodeReadable(d, p));
}

/** @throws ALREADY_EXISTS, LIMIT_EXCEEDED, CHAIN_CORRUPT */
export async function createDescriptor(fs: FileSystem, p: string, d: Descriptor): Promise<void> {
  await createDurable(fs, p, encodeReadable(d, p));
}

export async function readOpState(fs: FileSystem, p: string): Promise<OpState | undefined> {
  const text = await readBounded(fs, p, MAX_OP_BYTES, 'operation state');
  return text === undefined ? undefined : decodeOpState(text, p);
}

export async function writeOpState(fs: FileSystem, p: string, s: OpState): Promise<void> {
  await atomicReplace(fs, p, encodeOpState(s));
}

export async function removeOpState(fs: FileSystem, p: string): Promise<void> {
  try {
    await fs.unlink(p);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw fromSystemError(err, p, 'removing operation state failed');
  }
  await fs.syncDir(path.dirname(p)).catch((err: unknown) => {
    throw fromSystemError(err, path.dirname(p), 'syncing directory failed');
  });
}
