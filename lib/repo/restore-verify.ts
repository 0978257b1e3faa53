/**
 * `restore --verify`: reading back what was restored and comparing it with the
 * backup's chunk hashes (the data was already verified on its way in; this proves it
 * reached the target intact).
 */
import { createHash } from 'node:crypto';
import { DeltaDiskError } from '../errors.js';
import type { Content } from '../format/manifest.js';
import { HASH_SIZE, ZERO_HASH } from '../format/repo-limits.js';
import { isZero } from './backup-session.js';
import type { ChunkIndex } from './chunk-index.js';
import { contentPages } from './content-list.js';
import type { Repository } from './repository.js';

/**
 * Reads `c.size` bytes through `readAt` and checks every chunk.
 * @throws CHECKSUM_MISMATCH naming the first chunk that differs
 */
export async function verifyContent(repo: Repository, index: ChunkIndex, c: Content, readAt: (offset: number, length: number) => Promise<Buffer>, what: string): Promise<void> {
  let offset = 0;
  let i = 0;
  for await (const page of contentPages(repo, index, c)) {
    for (let at = 0; at < page.length; at += HASH_SIZE, i++) {
      const h = page.subarray(at, at + HASH_SIZE);
      const zero = h.equals(ZERO_HASH);
      const len = c.chunkSize > 0 ? Math.min(c.chunkSize, c.size - offset) : index.rawLengthOf(index.find(h));
      const data = await readAt(offset, len);
      const ok = data.length === len && (zero ? isZero(data) : createHash('sha256').update(data).digest().equals(h));
      if (!ok) {
        throw new DeltaDiskError('CHECKSUM_MISMATCH', `${what}: restored bytes at offset ${offset} (chunk ${i}) differ from the backup`, { offset });
      }
      offset += len;
    }
  }
  const tail = await readAt(offset, 1);
  if (offset !== c.size || tail.length !== 0) throw new DeltaDiskError('CHECKSUM_MISMATCH', `${what}: restored size differs from the backup's ${c.size} bytes`);
}
