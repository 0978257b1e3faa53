import { once } from 'node:events';
import type { Command } from 'commander';
import { DeltaDiskError } from '../../lib/index.js';
import { exportRawFile, rawChunks } from '../../lib/chain/export-raw.js';
import { assertNoOutput, assertNotOwnFile, handler, withDisk } from '../context.js';
import { formatBytes } from '../parse-size.js';
import { startProgress } from '../progress.js';
import { withInterruption } from '../signals.js';

export function registerExport(program: Command): void {
  program
    .command('export')
    .description('write the current state, or a snapshot, as a raw image (sparse where it reads zeros)')
    .argument('<disk>', 'descriptor path')
    .option('--snapshot <name>', 'export this snapshot instead of the current state')
    .requiredOption('-o, --output <file>', 'raw image to write, or - for stdout')
    .option('-f, --force', 'replace the output file if it exists')
    .action(
      handler(async (ctx, disk: string, o: { snapshot?: string; output: string; force?: boolean }) => {
        const d = await ctx.openDisk(disk, true);
        await withDisk(d, async (x) => {
          if (o.output !== '-') assertNotOwnFile(x, o.output);
          const reader = o.snapshot === undefined ? x.currentReader() : await x.openSnapshot(o.snapshot);
          try {
            if (o.output === '-') {
              if (process.stdout.isTTY) throw new DeltaDiskError('INVALID_ARGUMENT', 'refusing to write a disk image to a terminal');
              for await (const chunk of rawChunks(reader)) {
                if (!process.stdout.write(chunk)) await once(process.stdout, 'drain');
              }
              return;
            }
            if (o.force !== true) assertNoOutput(o.output);
            const progress = startProgress(ctx.out, 'export', reader.virtualSize);
            try {
              // A signal stops the export between two chunks; exportRawFile then removes its temporary file.
              await withInterruption(ctx.out, (checkpoint) =>
                exportRawFile(reader, o.output, {
                  overwrite: o.force === true,
                  onProgress: (n) => {
                    progress.add(n);
                    checkpoint();
                  },
                }),
              );
            } finally {
              progress.stop();
            }
            ctx.out.result({ output: o.output, bytes: reader.virtualSize, snapshot: o.snapshot ?? null });
            ctx.out.line(`exported ${formatBytes(reader.virtualSize)} to ${o.output}`);
          } finally {
            await reader.close();
          }
        });
      }),
    );
}
