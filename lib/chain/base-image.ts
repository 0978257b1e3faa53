/**
 * The read-only bottom of a chain: a raw image file, or nothing (a sparse base that
 * reads as zeros).
 *
 * The base is never written. Since every delta above it stores only differences,
 * a base changed behind our back would silently change every snapshot; so the
 * descriptor keeps a fingerprint (SHA-256 over the size and 16 sampled 64 KiB
 * ranges, 1 MiB of reading at most) and opening refuses a base that no longer
 * matches it with BASE_MODIFIED. Reads past the end of a base shorter than the
 * virtual disk return zeros.
 */
import { createHash } from 'node:crypto';
import { DeltaDiskError, fromSystemError } from '../errors.js';
import type { FileHandle, FileSystem } from '../io/file-system.js';
import { readInto } from '../io/positional.js';

const SAMPLE = 64 * 1024;
const SAMPLES = 16;

export interface BaseImage {
  /** Bytes of real content; reads beyond return zeros. */
  readonly size: number;
  /** The file, or undefined for a sparse base. */
  readonly path: string | undefined;
  /** Fills `target` with the base's bytes at `position`. */
  read(target: Uint8Array, position: number): Promise<void>;
  /** The file handle, for ranges wholly inside `size` (undefined for a sparse base). */
  readonly handle: FileHandle | undefined;
  retain(): this;
  release(): Promise<void>;
}

class ZeroBase implements BaseImage {
  readonly size = 0;
  readonly path = undefined;
  readonly handle = undefined;
  async read(target: Uint8Array): Promise<void> {
    target.fill(0);
  }
  retain(): this {
    return this;
  }
  async release(): Promise<void> {}
}

class RawBase implements BaseImage {
  readonly size: number;
  readonly path: string;
  readonly #handle: FileHandle;
  #refs = 1;

  constructor(handle: FileHandle, size: number) {
    this.#handle = handle;
    this.path = handle.path;
    this.size = size;
  }

  get handle(): FileHandle {
    return this.#handle;
  }

  read(target: Uint8Array, position: number): Promise<void> {
    const inside = Math.max(0, Math.min(target.length, this.size - position));
    if (inside < target.length) target.fill(0, inside);
    return inside > 0 ? readInto(this.#handle, target.subarray(0, inside), position) : Promise.resolve();
  }

  retain(): this {
    this.#refs++;
    return this;
  }

  async release(): Promise<void> {
    if (--this.#refs === 0) await this.#handle.close().catch(() => undefined);
  }
}

export const zeroBase: BaseImage = new ZeroBase();

/** Fingerprint of a raw image: SHA-256 of its size and sampled ranges. */
export async function fingerprintBase(handle: FileHandle, size: number): Promise<string> {
  const h = createHash('sha256');
  h.update(`deltadisk-base-v1:${size}:`);
  const buf = Buffer.allocUnsafe(SAMPLE);
  if (size <= SAMPLE * SAMPLES) {
    for (let pos = 0; pos < size; pos += SAMPLE) {
      const part = buf.subarray(0, Math.min(SAMPLE, size - pos));
      await readInto(handle, part, pos);
      h.update(part);
    }
  } else {
    for (let i = 0; i < SAMPLES; i++) {
      const pos = Math.floor(((size - SAMPLE) * i) / (SAMPLES - 1));
      await readInto(handle, buf, pos);
      h.update(buf);
    }
  }
  return h.digest('hex');
}

/**
 * Opens a raw base image at an already vetted path.
 * @param expected size and fingerprint from the descriptor; omitted when creating.
 * @throws BASE_MODIFIED when the file no longer matches.
 */
export async function openRawBase(
  fs: FileSystem,
  file: string,
  expected?: { readonly size: number; readonly fingerprint: string },
): Promise<{ base: BaseImage; fingerprint: string }> {
  let handle: FileHandle;
  try {
    handle = await fs.open(file, 'read');
  } catch (err) {
    throw fromSystemError(err, file, 'opening base image failed');
  }
  try {
    const st = await handle.stat();
    if (!st.isFile) throw new DeltaDiskError('UNSAFE_PATH', `base image ${file} is not a regular file`, { path: file });
    if (expected !== undefined && st.size !== expected.size) {
      throw new DeltaDiskError(
        'BASE_MODIFIED',
        `base image ${file} is ${st.size} bytes, but the disk was created on ${expected.size} bytes; it must never change`,
        { path: file },
      );
    }
    const fingerprint = await fingerprintBase(handle, st.size);
    if (expected !== undefined && fingerprint !== expected.fingerprint) {
      throw new DeltaDiskError('BASE_MODIFIED', `base image ${file} has been modified since the disk was created on it`, {
        path: file,
      });
    }
    return { base: new RawBase(handle, st.size), fingerprint };
  } catch (err) {
    await handle.close().catch(() => undefined);
    throw fromSystemError(err, file, 'reading base image failed');
  }
}
