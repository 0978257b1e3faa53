/**
 * Keeping a disk small and shallow: consolidate, compact, dedup, convert.
 */
import path from 'node:path';
import type { Command } from 'commander';
import { DeltaDiskError, type ConsolidateResult } from '../../lib/index.js';
import { flatten } from '../../lib/chain/flatten.js';
import { assertNoOutput, assertNotOwnFile, handler, withDisk } from '../context.js';
import { formatBytes, parseCount, parseFraction, parseSize } from '../parse-size.js';
import { startProgress } from '../progress.js';
import { withInterruption } from '../signals.js';

function describeConsolidation(r: ConsolidateResult, line: (s: string) => void, files: Map<string, string>): void {
  const name = (id: string): string => files.get(id) ?? id.slice(0, 8);
  if (r.steps.length === 0 && r.compacted.length === 0) line(r.dryRun ? 'nothing to do' : 'nothing to do: already consolidated');
  for (const st of r.steps) {
    if (st.action === 'drop') line(`${r.dryRun ? 'would drop' : 'dropped'} ${st.layers.map(name).join(', ')} (no snapshot, no child)`);
    else line(`${r.dryRun ? 'would merge away' : 'merged away'} ${name(st.layer)} (${st.reason === 'max-depth' ? 'to meet the depth cap' : 'no snapshot, single child'})`);
  }
  for (const m of r.merges) line(`  ${m.direction}: copied ${formatBytes(m.copiedBytes)} (${m.copiedBlocks} blocks)`);
  for (const c of r.compacted) {
    line(r.dryRun ? `would compact ${name(c.layer)}` : `compacted ${name(c.layer)}: ${formatBytes(c.bytesBefore)} → ${formatBytes(c.bytesAfter)}`);
  }
  line(`depth ${r.depthBefore} → ${r.depthAfter}`);
  if (r.blocked) line(`cannot meet the depth cap: ${r.blocked}`);
}

export function registerMaintain(program: Command): void {
  program
    .command('consolidate')
    .description('merge away layers that carry no snapshot, keep chains within a depth cap, compact overwritten space')
    .argument('<disk>', 'descriptor path')
    .option('--max-depth <n>', 'keep every path at most this many layers deep', parseCount)
    .option('-n, --dry-run', 'say what would be done, change nothing')
    .action(
      handler(async (ctx, disk: string, o: { maxDepth?: number; dryRun?: boolean }) => {
        const d = await ctx.openDisk(disk, o.dryRun === true);
        const files = new Map(d.descriptor.layers.map((l) => [l.id, l.file]));
        const r = await withDisk(d, (x) => x.consolidate({ ...(o.maxDepth !== undefined ? { maxDepth: o.maxDepth } : {}), dryRun: o.dryRun === true }));
        ctx.out.result({ ...r, dry_run: r.dryRun });
        describeConsolidation(r, (s) => ctx.out.line(s), files);
        return r.blocked !== undefined ? 3 : 0;
      }),
    );

  program
    .command('compact')
    .description('rewrite layers holding overwritten data into smaller files')
    .argument('<disk>', 'descriptor path')
    .option('--threshold <ratio>', 'compact layers whose overwritten share of the log reaches this (default 0.25)', parseFraction)
    .action(
      handler(async (ctx, disk: string, o: { threshold?: number }) => {
        const d = await ctx.openDisk(disk, false);
        const files = new Map(d.descriptor.layers.map((l) => [l.id, l.file]));
        const r = await withDisk(d, (x) => x.compact(o.threshold ?? 0.25));
        ctx.out.result(r);
        if (r.length === 0) ctx.out.line('nothing to compact');
        for (const c of r) ctx.out.line(`compacted ${files.get(c.layer) ?? c.layer}: ${formatBytes(c.bytesBefore)} → ${formatBytes(c.bytesAfter)}`);
      }),
    );

  program
    .command('dedup')
    .description('store blocks identical to one already stored (in the same layer or an ancestor) as references, and zero blocks as markers')
    .argument('<disk>', 'descriptor path')
    .action(
      handler(async (ctx, disk: string) => {
        const d = await ctx.openDisk(disk, false);
        const r = await withDisk(d, (x) => x.dedupAll());
        ctx.out.result(r);
        ctx.out.line(
          `deduplicated ${r.dedupedBlocks} blocks, ${r.zeroedBlocks} zero blocks; delta files ${formatBytes(r.bytesBefore)} → ${formatBytes(r.bytesAfter)}`,
        );
      }),
    );

  program
    .command('convert')
    .description('write a standalone copy of the current state or a snapshot: a new single-layer disk, or a raw image')
    .argument('<disk>', 'descriptor path')
    .requiredOption('-o, --output <file>', 'target: a .chain descriptor for a new disk, anything else for a raw image')
    .option('-O, --output-format <format>', 'chain or raw (default: chain for *.chain, raw otherwise)')
    .option('--snapshot <name>', 'copy this snapshot instead of the current state')
    .option('-b, --block-size <size>', 'block size of a new disk (default: the source\'s)', parseSize)
    .option('-f, --force', 'replace an existing raw output')
    .action(
      handler(async (ctx, disk: string, o: { output: string; outputFormat?: string; snapshot?: string; blockSize?: number; force?: boolean }) => {
        const format = o.outputFormat ?? (o.output.endsWith('.chain') ? 'chain' : 'raw');
        if (format !== 'chain' && format !== 'raw') throw new DeltaDiskError('INVALID_ARGUMENT', `output format must be chain or raw, not ${format}`);
        const d = await ctx.openDisk(disk, true);
        await withDisk(d, async (x) => {
          assertNotOwnFile(x, o.output);
          if (format === 'raw' && o.force !== true) assertNoOutput(o.output);
          const reader = o.snapshot === undefined ? x.currentReader() : await x.openSnapshot(o.snapshot);
          const progress = startProgress(ctx.out, 'convert', reader.virtualSize);
          try {
            // A signal stops the copy between two chunks; flatten then removes what it made.
            await withInterruption(ctx.out, (checkpoint) =>
              flatten(reader, o.output, {
                format,
                ...(o.blockSize !== undefined ? { blockSize: o.blockSize } : {}),
                overwrite: o.force === true,
                onProgress: (n) => {
                  progress.add(n);
                  checkpoint();
                },
              }),
            );
          } finally {
            progress.stop();
            await reader.close();
          }
          ctx.out.result({ output: path.resolve(o.output), format, snapshot: o.snapshot ?? null, virtualSize: reader.virtualSize });
          ctx.out.line(`wrote ${format === 'chain' ? 'a single-layer disk' : 'a raw image'} ${o.output} (${formatBytes(reader.virtualSize)})`);
        });
      }),
    );
}
