/**
 * `deltadisk backup <path>… --repo <repo>`: back up files, directories and disks.
 * Exit 3 (completed with warnings) when some sources could not be read.
 */
import type { Command } from 'commander';
import { backup, DeltaDiskError } from '../../lib/index.js';
import { handler, type Context } from '../context.js';
import { ExitCode } from '../exit-codes.js';
import { formatBytes } from '../parse-size.js';
import { reportItemError, seconds, shortId, StatusReporter, withRepo, withRepoOptions, type RepoOptions } from '../repo-context.js';
import { withTerminationSignals } from '../signals.js';

interface BackupCliOptions extends RepoOptions {
  tag: string[];
  dryRun?: boolean;
  chainSnapshots: string;
  host?: string;
  compression: boolean;
}

function chainSnapshots(v: string): 'none' | 'all' | string[] {
  if (v === 'none' || v === 'all') return v;
  const names = v.split(',').map((s) => s.trim()).filter((s) => s.length > 0);
  if (names.length === 0) throw new DeltaDiskError('INVALID_ARGUMENT', '--chain-snapshots is all, none, or a comma-separated list of names');
  return names;
}

async function run(ctx: Context, paths: string[], o: BackupCliOptions): Promise<number> {
  const status = new StatusReporter(ctx, o.dryRun ? 'backup (dry run)' : 'backup');
  const result = await withRepo(o, 'shared', 'backup', (repo) =>
    withTerminationSignals(
      ctx.out,
      async (signal) => {
        try {
          return await backup(repo, paths, {
            signal,
            tags: o.tag,
            dryRun: o.dryRun === true,
            chainSnapshots: chainSnapshots(o.chainSnapshots),
            compress: o.compression,
            allowPaths: ctx.allowPaths,
            ...(o.host === undefined ? {} : { host: o.host }),
            onProgress: (p) => status.update(p.bytesDone, p.bytesTotal, { bytes_read: p.bytesRead, bytes_new: p.bytesNew, current_file: p.path }),
            onWarning: (w) => reportItemError(ctx, 'backup', w.path, w.message, w.code),
          });
        } finally {
          status.stop();
        }
      },
      { first: 'stopping at the next chunk; nothing is published', again: 'still stopping' },
    ),
  );
  const s = result.summary;
  ctx.out.jsonLine({
    message_type: 'summary',
    dry_run: result.dryRun,
    backup_id: result.dryRun ? null : result.id,
    files: s.files,
    dirs: s.dirs,
    symlinks: s.symlinks,
    chains: s.chains,
    skipped: s.skipped,
    total_bytes_processed: s.bytes,
    bytes_read: s.bytesRead,
    chunks_new: s.chunksNew,
    data_added: s.bytesNew,
    data_added_packed: s.bytesStored,
    packs_new: s.packs,
    warnings: s.warnings,
    total_duration: s.durationMs / 1000,
  });
  const what = [`${s.files} file${s.files === 1 ? '' : 's'}`, `${s.dirs} dir${s.dirs === 1 ? '' : 's'}`];
  if (s.symlinks > 0) what.push(`${s.symlinks} link${s.symlinks === 1 ? '' : 's'}`);
  if (s.chains > 0) what.push(`${s.chains} disk${s.chains === 1 ? '' : 's'}`);
  ctx.out.line(
    `${result.dryRun ? 'dry run, nothing saved:' : `backup ${shortId(result.id)} saved:`} ${what.join(', ')}; ` +
      `${formatBytes(s.bytes)} processed, ${formatBytes(s.bytesRead)} read, ${formatBytes(s.bytesNew)} new (${formatBytes(s.bytesStored)} stored) in ${seconds(s.durationMs)}`,
  );
  if (s.skipped > 0) ctx.out.info(`skipped ${s.skipped} special file(s) (devices, FIFOs, sockets)`);
  if (s.warnings > 0) {
    ctx.out.info(`completed with ${s.warnings} warning(s): some sources were not backed up`);
    return ExitCode.WARNINGS;
  }
  return ExitCode.OK;
}

export function registerBackup(program: Command): void {
  withRepoOptions(
    program
      .command('backup')
      .description('back up files, directories and disks (*.chain) into a repository')
      .argument('<path...>', 'files, directories or disk descriptors'),
  )
    .option('--tag <tag>', 'tag the backup (repeatable)', (v: string, acc: string[]) => [...acc, v], [] as string[])
    .option('-n, --dry-run', 'read and chunk everything, report what would be added, write nothing')
    .option('--chain-snapshots <which>', "which of a disk's own snapshots to back up too: all, none, or name,name…", 'none')
    .option('--host <name>', 'host name recorded in the backup (default: this host)')
    .option('--no-compression', 'store chunks uncompressed')
    .addHelpText('after', '\nExamples:\n  deltadisk backup vm/ --repo /backups/repo --tag nightly\n  deltadisk backup vm/disk.chain --repo /backups/repo --chain-snapshots all')
    .action(handler((ctx, paths: string[], o: BackupCliOptions) => run(ctx, paths, o)));
}
