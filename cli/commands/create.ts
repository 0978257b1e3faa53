import type { Command } from 'commander';
import { Disk, DeltaDiskError } from '../../lib/index.js';
import { handler, withDisk } from '../context.js';
import { formatBytes, parseSize } from '../parse-size.js';

interface CreateOptions {
  size?: number;
  from?: string;
  blockSize?: number;
  dedup: boolean;
}

export function registerCreate(program: Command): void {
  program
    .command('create')
    .description('create a disk: empty of a given size, or on top of a raw image used as its read-only base')
    .argument('<disk>', 'descriptor path, e.g. vm/disk.chain')
    .option('-s, --size <size>', 'virtual size (4096, 64Ki, 1G …)', parseSize)
    .option('--from <raw-image>', 'raw image to use as the base; it is never modified')
    .option('-b, --block-size <size>', 'block size, a power of two from 4 KiB to 1 MiB (default 64 KiB)', parseSize)
    .option('--no-dedup', 'do not store identical blocks as references')
    .addHelpText('after', '\nExamples:\n  deltadisk create vm/disk.chain --size 20G\n  deltadisk create vm/disk.chain --from images/ubuntu.raw')
    .action(
      handler(async (ctx, disk: string, o: CreateOptions) => {
        if (o.size === undefined && o.from === undefined) {
          throw new DeltaDiskError('INVALID_ARGUMENT', 'give --size or --from');
        }
        const created = await Disk.create(disk, {
          ...(o.size === undefined ? {} : { size: o.size }),
          ...(o.from === undefined ? {} : { base: o.from }),
          ...(o.blockSize === undefined ? {} : { blockSize: o.blockSize }),
          dedup: o.dedup,
        });
        await withDisk(created, async (d) => {
          ctx.out.result({ path: d.path, virtualSize: d.virtualSize, blockSize: d.blockSize, dedup: d.dedup, base: d.descriptor.base?.file ?? null });
          ctx.out.line(
            `created ${d.path}: ${formatBytes(d.virtualSize)} (${d.virtualSize} bytes), block size ${formatBytes(d.blockSize)}` +
              (d.descriptor.base ? `, base ${d.descriptor.base.file}` : ''),
          );
        });
      }),
    );
}
