/**
 * `deltadisk diff`: the byte ranges that may differ between two snapshots of a disk
 * (the change map an incremental backup reads), or what changed between two backups
 * of a repository (`--repo`). A first argument naming an existing file is a disk.
 */
import fs from 'node:fs';
import type { Command } from 'commander';
import { DeltaDiskError } from '../../lib/index.js';
import { handler, withDisk, type Context } from '../context.js';
import { formatBytes } from '../parse-size.js';
import { withRepoOptions, type RepoOptions } from '../repo-context.js';
import { runRepoDiff } from './repo-diff.js';

async function diffDisk(ctx: Context, disk: string, a: string, b: string | undefined): Promise<void> {
  const d = await ctx.openDisk(disk, true);
  await withDisk(d, async (x) => {
    const blocks = await x.changedBlocks(a, b);
    const bs = x.blockSize;
    const ranges: { offset: number; length: number }[] = [];
    for (const block of blocks) {
      const start = block * bs;
      const len = Math.min(bs, x.virtualSize - start);
      const last = ranges[ranges.length - 1];
      if (last !== undefined && last.offset + last.length === start) last.length += len;
      else ranges.push({ offset: start, length: len });
    }
    const total = ranges.reduce((n, r) => n + r.length, 0);
    ctx.out.result({ from: a, to: b ?? null, blockSize: bs, changedBytes: total, ranges });
    for (const r of ranges) ctx.out.line(`0x${r.offset.toString(16).padEnd(18)}0x${r.length.toString(16)}`);
    ctx.out.line(`${ranges.length} ranges, ${formatBytes(total)} may differ between ${a} and ${b ?? 'the current state'}`);
  });
}

export function registerDiff(program: Command): void {
  withRepoOptions(
    program
      .command('diff')
      .description('what may differ between two snapshots of a disk, or between two backups of a repository (--repo)'),
    false,
  )
    .argument('<first>', 'a disk (then its earlier snapshot follows), or the older backup with --repo')
    .argument('<second>', 'the earlier snapshot of the disk, or the newer backup with --repo')
    .argument('[third]', 'the later snapshot of the disk (default: its current state)')
    .addHelpText('after', '\nExamples:\n  deltadisk diff vm/disk.chain monday tuesday\n  deltadisk diff --repo /backups 4f2a latest')
    .action(
      handler(async (ctx, first: string, second: string, third: string | undefined, o: RepoOptions) => {
        if (fs.existsSync(first)) return diffDisk(ctx, first, second, third);
        if (o.repo === undefined) throw new DeltaDiskError('INVALID_ARGUMENT', `${first} is not a disk; give --repo <repo> to compare backups`, { path: first });
        if (third !== undefined) throw new DeltaDiskError('INVALID_ARGUMENT', 'diff --repo compares two backups');
        return runRepoDiff(ctx, first, second, o);
      }),
    );
}
