import type { Command } from 'commander';
import { breakWriterLock, DeltaDiskError } from '../../lib/index.js';
import { handler } from '../context.js';
import { withRepoOptions, type RepoOptions } from '../repo-context.js';
import { runRepoUnlock } from './repo-unlock.js';

export function registerUnlock(program: Command): void {
  withRepoOptions(
    program
      .command('unlock')
      .description('remove a lock left behind by a process that is gone (refused while a live writer on this host holds it)')
      .argument('[disk]', 'descriptor path (or give --repo for a repository)'),
    false,
  )
    .option('--remove-all', 'with --repo: remove every repository lock, also of running processes (asks first)')
    .action(
      handler(async (ctx, disk: string | undefined, o: RepoOptions & { removeAll?: boolean }) => {
        if (o.repo !== undefined && disk === undefined) return runRepoUnlock(ctx, o);
        if (disk === undefined || o.repo !== undefined) throw new DeltaDiskError('INVALID_ARGUMENT', 'give a disk, or --repo <repo>, not both');
        const removed = await breakWriterLock(disk);
        ctx.out.result({ removed: removed ?? null });
        if (removed === undefined) ctx.out.line(`${disk} was not locked`);
        else if (removed === 'garbage') ctx.out.line(`removed an unreadable lock file of ${disk}`);
        else ctx.out.line(`removed the lock of pid ${removed.pid} on ${removed.host} (${removed.purpose}, since ${removed.started})`);
      }),
    );
}
