/**
 * `mkdir -p` over a FileSystem: creates directory `p` and whichever of its ancestors
 * are missing, each with `mode`. An entry already at `p` (or at an ancestor) is left
 * as it is: whoever then uses the path meets what is there, with its own error.
 */
import path from 'node:path';
import type { FileSystem } from './file-system.js';

export async function makeDirs(fs: FileSystem, p: string, mode: number): Promise<void> {
  if (await fs.lstat(p).then(() => true, () => false)) return;
  const parent = path.dirname(p);
  if (parent !== p) await makeDirs(fs, parent, mode);
  await fs.mkdir(p, mode).catch((err: unknown) => {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  });
}
