/**
 * The disk the CLI tests of info, export and unlock work on: 8 MiB + 1000 bytes
 * (not a multiple of the block size, over two 4 MiB export chunks), a snapshot
 * "snap", and changes after it, with the bytes each state must read.
 */
import path from 'node:path';
import { Disk } from '../../lib/index.js';
import { pattern } from './disk.js';

export const FIXTURE_BS = 4096;
export const FIXTURE_SIZE = 8 * 1024 * 1024 + 1000;

export interface CliFixture {
  readonly file: string;
  readonly atSnap: Buffer;
  readonly current: Buffer;
}

export async function cliFixture(dir: string): Promise<CliFixture> {
  const BS = FIXTURE_BS;
  const SIZE = FIXTURE_SIZE;
  const file = path.join(dir, 'disk.chain');
  const d = await Disk.create(file, { size: SIZE, blockSize: BS });
  await d.write(0, pattern(3 * BS, 1));
  await d.write(SIZE - 500, pattern(500, 2));
  await d.snapshot('snap', 'a description');
  const atSnap = await d.read(0, SIZE);
  await d.write(BS, pattern(BS, 3));
  await d.writeZeroes(0, 10);
  const current = await d.read(0, SIZE);
  await d.close();
  return { file, atSnap, current };
}
