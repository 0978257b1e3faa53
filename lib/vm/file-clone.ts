/**
 * Point-in-time copies of single files for a capture: a reflink clone where the
 * file system can share extents (btrfs, XFS, bcachefs, APFS …: O(1), atomic with
 * respect to the file's content), else a sparse-preserving copy.
 *
 * The clone is tried with COPYFILE_FICLONE_FORCE, which fails instead of silently
 * copying; the outcome says what happened, because a copy made while the guest is
 * frozen lengthens the freeze window and the capture must say so. The copy skips
 * all-zero 1 MiB chunks (holes stay holes) and stops between chunks when aborted.
 * The target must not exist (it is created exclusively, never through a symlink).
 */
import fs from 'node:fs';
import { DeltaDiskError, fromSystemError, throwIfAborted } from '../errors.js';

export type CloneMethod = 'reflink' | 'copy';
/** `auto`: reflink when possible, else copy. */
export type ClonePolicy = 'auto' | 'reflink' | 'copy';

const CHUNK = 1024 * 1024;
const NO_REFLINK = new Set(['EOPNOTSUPP', 'ENOTSUP', 'EXDEV', 'ENOSYS', 'EINVAL', 'ENOTTY', 'EPERM']);

export interface CloneResult {
  readonly method: CloneMethod;
  readonly size: number;
}

export class FileCloner {
  readonly #policy: ClonePolicy;
  /** Once a reflink failed for lack of support, do not try again in this capture. */
  #reflinkWorks: boolean | undefined;

  constructor(policy: ClonePolicy = 'auto') {
    this.#policy = policy;
  }

  /** @throws NOT_FOUND, IO_ERROR, NO_SPACE, UNSUPPORTED (policy `reflink` on a file system without it), INTERRUPTED */
  async clone(src: string, dst: string, signal?: AbortSignal): Promise<CloneResult> {
    if (this.#policy !== 'copy' && this.#reflinkWorks !== false) {
      try {
        await fs.promises.copyFile(src, dst, fs.constants.COPYFILE_EXCL | fs.constants.COPYFILE_FICLONE_FORCE);
        this.#reflinkWorks = true;
        return { method: 'reflink', size: (await fs.promises.stat(dst)).size };
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code ?? '';
        if (!NO_REFLINK.has(code)) throw fromSystemError(err, src, 'cloning failed');
        await fs.promises.unlink(dst).catch(() => undefined);
        this.#reflinkWorks = false;
        if (this.#policy === 'reflink') throw new DeltaDiskError('UNSUPPORTED', `the file system of ${src} cannot clone files (reflink): ${code}`, { path: src });
      }
    }
    return { method: 'copy', size: await sparseCopy(src, dst, signal) };
  }
}

/** Copies `src` to a new file `dst`, leaving holes where the source reads zeros. */
export async function sparseCopy(src: string, dst: string, signal?: AbortSignal): Promise<number> {
  let input: fs.promises.FileHandle | undefined;
  let output: fs.promises.FileHandle | undefined;
  try {
    input = await fs.promises.open(src, 'r');
    output = await fs.promises.open(dst, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_NOFOLLOW, 0o600);
    const size = (await input.stat()).size;
    const buf = Buffer.allocUnsafe(Math.min(CHUNK, Math.max(size, 1)));
    let pos = 0;
    while (pos < size) {
      throwIfAborted(signal, `copying ${src} was interrupted`, { path: src });
      const want = Math.min(buf.length, size - pos);
      const { bytesRead } = await input.read(buf, 0, want, pos);
      if (bytesRead === 0) break; // the file shrank under us: the copy ends where it does
      const chunk = buf.subarray(0, bytesRead);
      if (!isZero(chunk)) {
        let done = 0;
        while (done < bytesRead) done += (await output.write(chunk, done, bytesRead - done, pos + done)).bytesWritten;
      }
      pos += bytesRead;
    }
    await output.truncate(pos);
    return pos;
  } catch (err) {
    if (output !== undefined) await fs.promises.unlink(dst).catch(() => undefined);
    throw fromSystemError(err, src, 'copying failed');
  } finally {
    await input?.close().catch(() => undefined);
    await output?.close().catch(() => undefined);
  }
}

const ZEROS = Buffer.alloc(CHUNK);

function isZero(b: Buffer): boolean {
  return b.equals(ZEROS.subarray(0, b.length));
}
