import type { Command } from 'commander';
import { handler, withDisk } from '../context.js';
import { formatBytes } from '../parse-size.js';

export function registerInfo(program: Command): void {
  program
    .command('info')
    .description('show a disk: size, block size, base, chain depth, layers and space used')
    .argument('<disk>', 'descriptor path')
    .action(
      handler(async (ctx, disk: string) => {
        const d = await ctx.openDisk(disk, true);
        const info = await withDisk(d, (x) => x.info());
        if (ctx.out.json) {
          ctx.out.result(info);
          return;
        }
        const o = ctx.out;
        o.line(`disk:            ${info.path}`);
        o.line(`virtual size:    ${formatBytes(info.virtualSize)} (${info.virtualSize} bytes)`);
        o.line(`block size:      ${formatBytes(info.blockSize)}`);
        o.line(`base:            ${info.base === null ? 'none (reads as zeros)' : `${info.base.file} (${formatBytes(info.base.size)})`}`);
        o.line(`dedup:           ${info.dedup ? 'on' : 'off'}`);
        o.line(`chain depth:     ${info.depth}`);
        o.line(`layers:          ${info.layerCount}, snapshots: ${info.snapshotCount}`);
        o.line(`logical data:    ${formatBytes(info.logicalBytes)} mapped by the layers`);
        o.line(`allocated:       ${formatBytes(info.allocatedBytes)}`);
        o.line(`stored data:     ${formatBytes(info.storedBytes)}`);
        o.line(`saved by dedup:  ${formatBytes(info.dedupSavedBytes)}`);
        o.line();
        o.line('LAYER                 PARENT    SNAPSHOT         LOGICAL     STORED   DEDUPED  FILE SIZE  GARBAGE');
        const short = (id: string | null): string => (id === null ? 'base' : id.slice(0, 8));
        for (const l of info.layers) {
          const mark = l.active ? '*' : l.current ? '|' : ' ';
          o.line(
            `${mark} ${l.file.padEnd(20).slice(0, 20)}${short(l.parent).padEnd(10)}${(l.snapshot ?? '-').padEnd(14).slice(0, 14)}` +
              `${formatBytes(l.logicalBytes).padStart(10)} ${formatBytes(l.storedBytes).padStart(10)} ${formatBytes(l.dedupSavedBytes).padStart(9)}` +
              ` ${formatBytes(l.fileBytes).padStart(10)} ${formatBytes(l.garbageBytes).padStart(8)}`,
          );
        }
        o.line('(* active layer, | on the path of the current state)');
      }),
    );
}
