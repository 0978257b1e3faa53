/**
 * Reads a VMDK descriptor from a file that is either a text descriptor or a hosted
 * sparse extent carrying one (monolithicSparse, hosted deltas).
 *
 * Reads are bounded: the 512-byte header, then at most the (validated) embedded
 * descriptor, or a text file of at most 1 MiB. A file that is a binary extent of
 * another kind (`COWD`, SE sparse) is VM_INVALID: it is data, not a descriptor.
 * The path must already have passed the path guard.
 */
import { DeltaDiskError, fromSystemError } from '../errors.js';
import type { FileHandle, FileSystem } from '../io/file-system.js';
import { readExactly, readUpTo } from '../io/positional.js';
import { decodeSparseExtentHeader, identifyExtent, SPARSE_HEADER_SIZE, type SparseExtentHeader } from './sparse-extent-header.js';
import { MAX_VMDK_DESCRIPTOR_BYTES, parseVmdkDescriptor, type VmdkDescriptor } from './vmdk-descriptor.js';

export interface VmdkFile {
  readonly descriptor: VmdkDescriptor;
  /** The sparse header when the descriptor is embedded in an extent. */
  readonly sparseHeader: SparseExtentHeader | undefined;
  readonly size: number;
}

/**
 * Opens `p` for reading only when it is a regular file. The type is checked before
 * the open: opening a FIFO for reading blocks until a writer appears (forever, in a
 * VM directory), and opening a device can have side effects. After the open, the
 * handle must still be that same regular file (a swap in between is refused).
 * @throws UNSAFE_PATH (not a regular file), NOT_FOUND, IO_ERROR …
 */
export async function withReadHandle<T>(fs: FileSystem, p: string, what: string, fn: (h: FileHandle, size: number) => Promise<T>): Promise<T> {
  const before = await fs.stat(p).catch((err: unknown) => {
    throw fromSystemError(err, p, `opening ${what} failed`);
  });
  if (!before.isFile) throw new DeltaDiskError('UNSAFE_PATH', `${what} ${p} is not a regular file`, { path: p });
  let h: FileHandle;
  try {
    h = await fs.open(p, 'read');
  } catch (err) {
    throw fromSystemError(err, p, `opening ${what} failed`);
  }
  try {
    const st = await h.stat();
    if (!st.isFile || st.ino !== before.ino || st.dev !== before.dev) throw new DeltaDiskError('UNSAFE_PATH', `${what} ${p} is not a regular file, or was replaced while being opened`, { path: p });
    return await fn(h, st.size);
  } finally {
    await h.close().catch(() => undefined);
  }
}

/** @throws VM_INVALID, UNSUPPORTED_VERSION, UNSUPPORTED, LIMIT_EXCEEDED, TRUNCATED, NOT_FOUND, IO_ERROR */
export async function readVmdkFile(fs: FileSystem, p: string): Promise<VmdkFile> {
  const what = `VMDK ${p}`;
  return withReadHandle(fs, p, 'VMDK', async (h, size) => {
    const head = await readUpTo(h, 0, SPARSE_HEADER_SIZE);
    const kind = identifyExtent(head);
    try {
      if (kind === 'kdmv') {
        const header = decodeSparseExtentHeader(head, size, what);
        if (header.descriptorOffset === 0) {
          throw new DeltaDiskError('VM_INVALID', `${what} is a sparse extent without an embedded descriptor (a split extent, not a disk)`);
        }
        const text = await readExactly(h, header.descriptorOffset * 512, header.descriptorSize * 512);
        return { descriptor: parseVmdkDescriptor(text, `descriptor embedded in ${p}`), sparseHeader: header, size };
      }
      if (kind !== 'other') throw new DeltaDiskError('VM_INVALID', `${what} is a ${kind.toUpperCase()} delta extent, not a descriptor`);
      if (size > MAX_VMDK_DESCRIPTOR_BYTES) {
        throw new DeltaDiskError('VM_INVALID', `${what} is ${size} bytes: too large for a text descriptor and not a sparse extent`);
      }
      const text = await readUpTo(h, 0, MAX_VMDK_DESCRIPTOR_BYTES + 1);
      return { descriptor: parseVmdkDescriptor(text, what), sparseHeader: undefined, size };
    } catch (err) {
      if (err instanceof DeltaDiskError && err.path === undefined) {
        throw new DeltaDiskError(err.code, err.message, { path: p, offset: err.offset, cause: err });
      }
      throw err;
    }
  });
}

/** The first bytes of an extent file, to check its magic (empty for a file shorter than 8 bytes). */
export async function readExtentHead(fs: FileSystem, p: string): Promise<{ head: Buffer; size: number }> {
  return withReadHandle(fs, p, 'extent', async (h, size) => ({ head: await readUpTo(h, 0, SPARSE_HEADER_SIZE), size }));
}
