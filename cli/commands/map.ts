/**
 * `deltadisk map`, like `qemu-img map`: where each extent of a disk comes from.
 */
import type { Command } from 'commander';
import type { Extent } from '../../lib/index.js';
import { handler, withDisk } from '../context.js';

export function registerMap(program: Command): void {
  program
    .command('map')
    .description('for each extent of the virtual disk, where its data comes from (a layer, zeros, or the base)')
    .argument('<disk>', 'descriptor path')
    .option('--snapshot <name>', 'map this snapshot instead of the current state')
    .action(
      handler(async (ctx, disk: string, o: { snapshot?: string }) => {
        const d = await ctx.openDisk(disk, true);
        await withDisk(d, async (x) => {
          const reader = o.snapshot === undefined ? x.currentReader() : await x.openSnapshot(o.snapshot);
          let extents: Extent[];
          try {
            extents = reader.extents();
          } finally {
            await reader.close();
          }
          const files = new Map(x.descriptor.layers.map((l) => [l.id, l.file]));
          ctx.out.result(extents.map((e) => ({ ...e, file: e.layer === undefined ? (e.kind === 'base' ? (x.descriptor.base?.file ?? null) : null) : files.get(e.layer) })));
          ctx.out.line('Offset              Length              Depth  Source');
          for (const e of extents) {
            const src = e.kind === 'data' ? `${files.get(e.layer!)} @ 0x${e.offset!.toString(16)}` : e.kind === 'zero' ? 'zeros' : x.descriptor.base ? `base ${x.descriptor.base.file}` : 'unallocated (zeros)';
            ctx.out.line(`0x${e.start.toString(16).padEnd(18)}0x${e.length.toString(16).padEnd(18)}${String(e.depth ?? '-').padEnd(7)}${src}`);
          }
        });
      }),
    );
}
