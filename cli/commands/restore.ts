/**
 * `deltadisk restore <backup-id|latest> --repo <repo> --target <dir>`.
 * Exit 3 (completed with warnings) when entries were skipped (special files).
 */
import type { Command } from 'commander';
import { restore } from '../../lib/index.js';
import { handler, type Context } from '../context.js';
import { ExitCode } from '../exit-codes.js';
import { formatBytes } from '../parse-size.js';
import { latestFilter, reportItemError, seconds, shortId, StatusReporter, withLatestFilterOptions, withRepo, withRepoOptions, type LatestFilterOptions, type RepoOptions } from '../repo-context.js';
import { withTerminationSignals } from '../signals.js';

interface RestoreCliOptions extends RepoOptions, LatestFilterOptions {
  target: string;
  include: string[];
  verify?: boolean;
  overwrite?: boolean;
  flatten?: boolean;
}

async function run(ctx: Context, spec: string, o: RestoreCliOptions): Promise<number> {
  const status = new StatusReporter(ctx, 'restore');
  const result = await withRepo(o, 'shared', 'restore', async (repo) => {
    const id = await repo.resolveBackup(spec, latestFilter(o));
    return withTerminationSignals(
      ctx.out,
      async (signal) => {
        try {
          return await restore(repo, id, {
            signal,
            target: o.target,
            include: o.include,
            verify: o.verify === true,
            overwrite: o.overwrite === true,
            flatten: o.flatten === true,
            onProgress: (p) => status.update(p.bytesDone, p.bytesTotal, { current_file: p.path }),
            onWarning: (w) => reportItemError(ctx, 'restore', w.path, w.message, w.code),
          });
        } finally {
          status.stop();
        }
      },
      { first: 'stopping; the file being written is removed', again: 'still stopping' },
    );
  });
  const s = result.summary;
  ctx.out.jsonLine({
    message_type: 'summary',
    backup_id: result.id,
    target: result.target,
    files: s.files,
    dirs: s.dirs,
    symlinks: s.symlinks,
    chains: s.chains,
    skipped: s.skipped,
    total_bytes: s.bytes,
    verified: s.verified,
    warnings: s.warnings,
    total_duration: s.durationMs / 1000,
  });
  ctx.out.line(
    `restored backup ${shortId(result.id)} to ${result.target}: ${s.files} files, ${s.dirs} dirs, ${s.symlinks} links, ${s.chains} disks, ` +
      `${formatBytes(s.bytes)} in ${seconds(s.durationMs)}${s.verified ? ', verified' : ''}`,
  );
  return s.warnings > 0 ? ExitCode.WARNINGS : ExitCode.OK;
}

export function registerRestore(program: Command): void {
  withLatestFilterOptions(
    withRepoOptions(
      program
        .command('restore')
        .description('restore a backup into a directory (never writing outside it)')
        .argument('<backup>', 'backup id, unique id prefix, or "latest"'),
    ),
  )
    .requiredOption('-t, --target <dir>', 'directory to restore into (created if missing)')
    .option('--include <path>', 'restore only this path of the backup and what is below it (repeatable)', (v: string, acc: string[]) => [...acc, v], [] as string[])
    .option('--verify', 'read the restored data back and compare it with the backup')
    .option('--overwrite', 'replace existing files and symbolic links (never directories or disks)')
    .option('--flatten', 'restore disks as a single raw image (<name>.raw) instead of a chain with its snapshots')
    .action(handler((ctx, spec: string, o: RestoreCliOptions) => run(ctx, spec, o)));
}
