/**
 * `deltadisk repo init <repo>`: create an empty backup repository.
 */
import type { Command } from 'commander';
import { Repository } from '../../lib/index.js';
import { handler } from '../context.js';
import { formatBytes, parseSize } from '../parse-size.js';

export function registerRepo(program: Command): void {
  const repo = program.command('repo').description('create and manage backup repositories');
  repo
    .command('init')
    .description('create an empty backup repository in a new or empty directory')
    .argument('<repo>', 'repository directory')
    .option('--chunk-size <size>', 'fixed chunk size for disk images (power of two, 4 KiB … 8 MiB; default 1 MiB)', parseSize)
    .option('--pack-size <size>', 'target size of pack files (default 16 MiB)', parseSize)
    .action(
      handler(async (ctx, dir: string, o: { chunkSize?: number; packSize?: number }) => {
        const config = await Repository.init(dir, {
          ...(o.chunkSize === undefined ? {} : { fixedChunkSize: o.chunkSize }),
          ...(o.packSize === undefined ? {} : { packSize: o.packSize }),
        });
        ctx.out.result({ id: config.id, path: dir, fixedChunkSize: config.fixedChunkSize, packSize: config.packSize });
        ctx.out.line(`created repository ${config.id.slice(0, 8)} at ${dir} (image chunks ${formatBytes(config.fixedChunkSize)}, packs ${formatBytes(config.packSize)})`);
      }),
    );
}
