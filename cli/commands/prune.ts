/**
 * `deltadisk prune --repo <repo>`: delete data no backup references. Safe while
 * backups run (it waits for those that started earlier). Exit 3 when deletion had to
 * be deferred (run it again later). Asks for confirmation. SIGINT or SIGTERM stops it
 * at its next step (exit 130): before its plan with nothing deleted, after it with
 * the plan left for the next prune to finish.
 */
import type { Command } from 'commander';
import { prune, type PruneProgress } from '../../lib/index.js';
import { confirm } from '../confirm.js';
import { handler, type Context } from '../context.js';
import { withTerminationSignals } from '../signals.js';
import { ExitCode } from '../exit-codes.js';
import { formatBytes, parseCount, parseFraction } from '../parse-size.js';
import { seconds, StatusReporter, withRepo, withRepoOptions, type RepoOptions } from '../repo-context.js';

export interface PruneCliOptions extends RepoOptions {
  dryRun?: boolean;
  maxWait?: number;
  repackThreshold?: number;
  confirmed?: boolean;
}

export async function runPrune(ctx: Context, o: PruneCliOptions): Promise<number> {
  const t0 = performance.now();
  const options = {
    ...(o.maxWait === undefined ? {} : { maxWaitMs: o.maxWait * 1000 }),
    ...(o.repackThreshold === undefined ? {} : { repackThreshold: o.repackThreshold }),
    onNote: (m: string) => ctx.out.info(m),
  };
  if (!o.dryRun && !o.confirmed) await confirm(`Delete unreferenced data from ${o.repo}?`, ctx.globals.yes);
  // A bar (or --json status lines) per phase: packs looked at for repacking, then condemned packs deleted.
  const status = { repack: new StatusReporter(ctx, 'repack'), delete: new StatusReporter(ctx, 'delete') };
  const onProgress = (p: PruneProgress): void => {
    if (p.phase === 'delete') status.repack.stop();
    status[p.phase].update(p.done, p.total, { phase: p.phase });
  };
  const r = await withRepo(o, o.dryRun ? false : 'maintenance', 'prune', (repo) =>
    withTerminationSignals(
      ctx.out,
      async (signal) => {
        try {
          return await prune(repo, { ...options, dryRun: o.dryRun === true, signal, onProgress });
        } finally {
          status.repack.stop();
          status.delete.stop();
        }
      },
      { first: 'stopping at the next step', again: 'still stopping' },
    ),
  );
  const ms = Math.round(performance.now() - t0);
  ctx.out.jsonLine({
    message_type: 'summary',
    dry_run: r.dryRun,
    completed: r.completed,
    packs_deleted: r.packsDeleted,
    bytes_deleted: r.bytesDeleted,
    packs_repacked: r.packsRepacked,
    bytes_repacked: r.bytesRepacked,
    packs_spared: r.packsSpared,
    index_files_written: r.indexFilesWritten,
    index_files_deleted: r.indexFilesDeleted,
    temps_deleted: r.tempsDeleted,
    bytes_before: r.bytesBefore,
    bytes_after: r.bytesAfter,
    total_duration: ms / 1000,
  });
  const verb = r.dryRun ? 'would delete' : 'deleted';
  ctx.out.line(
    `${verb} ${r.packsDeleted} packs (${formatBytes(r.bytesDeleted)}), repacked ${r.packsRepacked} (${formatBytes(r.bytesRepacked)} written)` +
      `${r.tempsDeleted > 0 ? `, ${r.tempsDeleted} temporary files` : ''}; ${formatBytes(r.bytesBefore)} → ${formatBytes(r.bytesAfter)} in ${seconds(ms)}`,
  );
  if (!r.completed) {
    ctx.out.info('deletion deferred: operations that started before this prune are still running; run prune again later');
    return ExitCode.WARNINGS;
  }
  return ExitCode.OK;
}

export function registerPrune(program: Command): void {
  withRepoOptions(program.command('prune').description('delete data no backup references (safe while backups run)'))
    .option('-n, --dry-run', 'show what would be deleted, delete nothing')
    .option('--max-wait <seconds>', 'wait at most this long for operations that started earlier (default 3600)', parseCount)
    .option('--repack-threshold <fraction>', 'repack packs at least this unused (default 0.2)', parseFraction)
    .action(handler((ctx, o: PruneCliOptions) => runPrune(ctx, o)));
}
