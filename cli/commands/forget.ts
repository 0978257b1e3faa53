/**
 * `deltadisk forget --repo <repo> --keep-…`: remove backups a retention policy no
 * longer keeps (their data stays until `prune`). Asks for confirmation.
 */
import type { Command } from 'commander';
import { forget, type CalendarSpan, type ForgetOptions } from '../../lib/index.js';
import { confirm } from '../confirm.js';
import { handler, type Context } from '../context.js';
import { parseCount, parseSpan } from '../parse-size.js';
import { shortId, withRepo, withRepoOptions, type RepoOptions } from '../repo-context.js';
import { runPrune } from './prune.js';

interface ForgetCliOptions extends RepoOptions {
  keepLast?: number;
  keepHourly?: number;
  keepDaily?: number;
  keepWeekly?: number;
  keepMonthly?: number;
  keepYearly?: number;
  keepWithin?: CalendarSpan;
  keepQuiesced?: number;
  keepTag: string[];
  tag: string[];
  dryRun?: boolean;
  prune?: boolean;
  utc?: boolean;
}

async function run(ctx: Context, o: ForgetCliOptions): Promise<number | void> {
  const policy: ForgetOptions = {
    ...(o.keepLast === undefined ? {} : { keepLast: o.keepLast }),
    ...(o.keepHourly === undefined ? {} : { keepHourly: o.keepHourly }),
    ...(o.keepDaily === undefined ? {} : { keepDaily: o.keepDaily }),
    ...(o.keepWeekly === undefined ? {} : { keepWeekly: o.keepWeekly }),
    ...(o.keepMonthly === undefined ? {} : { keepMonthly: o.keepMonthly }),
    ...(o.keepYearly === undefined ? {} : { keepYearly: o.keepYearly }),
    ...(o.keepWithin === undefined ? {} : { keepWithin: o.keepWithin }),
    ...(o.keepQuiesced === undefined ? {} : { keepQuiesced: o.keepQuiesced }),
    keepTags: o.keepTag,
    tags: o.tag,
    utc: o.utc === true,
  };
  const plan = await withRepo(o, false, 'forget', (repo) => forget(repo, { ...policy, dryRun: true }));
  const doomed = plan.groups.reduce((a, g) => a + g.remove.length, 0);
  const print = (groups: typeof plan.groups, dry: boolean): void => {
    for (const g of groups) {
      ctx.out.line(`host ${g.host}, paths ${g.paths.join(', ')}: keep ${g.keep.length}, ${dry ? 'would remove' : 'remove'} ${g.remove.length}`);
      for (const k of g.keep) ctx.out.line(`  keep    ${shortId(k.id)}  ${k.time}  ${k.reasons.join(', ')}`);
      for (const r of g.remove) ctx.out.line(`  ${dry ? 'would remove' : 'remove'}  ${shortId(r.id)}  ${r.time}`);
    }
  };
  if (o.dryRun || doomed === 0) {
    ctx.out.jsonLine({ dry_run: o.dryRun === true, groups: plan.groups, removed: [] });
    print(plan.groups, o.dryRun === true);
    if (doomed === 0) ctx.out.line('nothing to forget');
    return;
  }
  await confirm(`Forget ${doomed} backup(s) of ${o.repo}?`, ctx.globals.yes);
  // Decided again under the lock, but never beyond what was shown and confirmed: a
  // backup that landed meanwhile does not make it forget one more.
  const confirmed = new Set(plan.groups.flatMap((g) => g.remove.map((r) => r.id)));
  const done = await withRepo(o, 'maintenance', 'forget', (repo) => forget(repo, { ...policy, only: confirmed }));
  // One line, so that with --prune (whose summary line follows) stdout is JSON lines.
  ctx.out.jsonLine({ dry_run: false, groups: done.groups, removed: done.removed });
  print(done.groups, false);
  ctx.out.line(`forgot ${done.removed.length} backup(s)${o.prune ? '' : '; run `deltadisk prune` to reclaim their space'}`);
  if (o.prune) return runPrune(ctx, { ...o, confirmed: true });
}

export function registerForget(program: Command): void {
  withRepoOptions(program.command('forget').description('remove backups a retention policy no longer keeps (data stays until prune)'))
    .option('--keep-last <n>', 'keep the n newest backups', parseCount)
    .option('--keep-hourly <n>', 'keep the newest backup of each of the last n hours with backups', parseCount)
    .option('--keep-daily <n>', 'keep the newest backup of each of the last n days with backups', parseCount)
    .option('--keep-weekly <n>', 'keep the newest backup of each of the last n ISO weeks with backups', parseCount)
    .option('--keep-monthly <n>', 'keep the newest backup of each of the last n months with backups', parseCount)
    .option('--keep-yearly <n>', 'keep the newest backup of each of the last n years with backups', parseCount)
    .option('--keep-within <span>', 'keep every backup taken within this span (e.g. 7d, 1y6m, 36h) before the newest one', parseSpan)
    .option('--keep-quiesced <n>', 'keep the n newest quiesced VM backups (all freeze hooks succeeded)', parseCount)
    .option('--keep-tag <tag>', 'keep every backup with this tag (repeatable)', (v: string, acc: string[]) => [...acc, v], [] as string[])
    .option('--tag <tag>', 'consider only backups with this tag (repeatable)', (v: string, acc: string[]) => [...acc, v], [] as string[])
    .option('--utc', 'count days, weeks and months in UTC instead of local time')
    .option('-n, --dry-run', 'show what would be removed, remove nothing')
    .option('--prune', 'run prune afterwards')
    .action(handler((ctx, o: ForgetCliOptions) => run(ctx, o)));
}
