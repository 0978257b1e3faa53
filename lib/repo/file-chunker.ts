/**
 * Chunking one regular file into the repository.
 *
 * Disk images are cut into fixed chunks at multiples of the chunk size (block
 * aligned), so a block changed in place changes one chunk and zero regions become
 * the reserved zero hash without being stored. Other files go through FastCDC so an
 * insertion moves only the chunks around it. Reads run ahead of hashing; a read
 * failure surfaces as SourceReadError (a warning), a repository failure as itself.
 */
import type { Content } from '../format/manifest.js';
import type { FileHandle } from '../io/file-system.js';
import { SourceReadError, type BackupSession } from './backup-session.js';
import { ContentBuilder } from './content-list.js';
import { FastCdc } from './fastcdc.js';
import { readAhead } from './read-ahead.js';

const MiB = 1024 * 1024;

async function* guarded(gen: AsyncGenerator<Buffer>): AsyncGenerator<Buffer> {
  // Not a for-await: a read error must become a SourceReadError, not end the loop.
  for (;;) {
    let r: IteratorResult<Buffer>;
    try {
      r = await gen.next();
    } catch (err) {
      throw new SourceReadError(err);
    }
    if (r.done === true) return;
    yield r.value;
  }
}

/**
 * @param chunkSize fixed chunk size, or 0 for content-defined chunks
 * @param expectedSize the file's size when it was looked at (it is read to its end regardless)
 */
export async function chunkFile(s: BackupSession, handle: FileHandle, abs: string, chunkSize: number, expectedSize: number): Promise<Content> {
  const builder = new ContentBuilder(s.writer, chunkSize);
  if (chunkSize > 0) {
    const piece = Math.max(1, Math.floor((4 * MiB) / chunkSize)) * chunkSize;
    const reader = readAhead(handle, { pieceSize: piece, depth: 4, expectedSize, align: chunkSize });
    for await (const buf of guarded(reader)) {
      const chunks: Buffer[] = [];
      for (let at = 0; at < buf.length; at += chunkSize) chunks.push(buf.subarray(at, Math.min(buf.length, at + chunkSize)));
      const hashes = await s.chunkHashes(chunks);
      for (let k = 0; k < chunks.length; k++) await builder.push(hashes[k]!, chunks[k]!.length);
      s.progress(abs, buf.length, buf.length);
      reader.recycle(buf); // the pack writer copied what it keeps
    }
    return builder.finish();
  }
  const cdc = new FastCdc(s.repo.config.chunker);
  const store = async (chunks: readonly Buffer[]): Promise<void> => {
    const hashes = await s.storeChunks(chunks);
    for (let k = 0; k < chunks.length; k++) await builder.push(hashes[k]!, chunks[k]!.length);
  };
  const reader = readAhead(handle, { pieceSize: 4 * MiB, depth: 3, expectedSize });
  for await (const buf of guarded(reader)) {
    await store(cdc.push(buf));
    s.progress(abs, buf.length, buf.length);
    reader.recycle(buf);
  }
  const last = cdc.finish();
  if (last !== undefined) await store([last]);
  return builder.finish();
}
