import fs from 'node:fs';
import path from 'node:path';
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
        // DELTADISK_REPOSITORY set in the environment does not make `unlock <disk>` ambiguous; --repo given with a disk does.
        if (disk === undefined || (o.repo !== undefined && ctx.command.getOptionValueSource('repo') !== 'env')) {
          throw new DeltaDiskError('INVALID_ARGUMENT', 'give a disk, or --repo <repo>, not both');
        }
        if (o.removeAll) throw new DeltaDiskError('INVALID_ARGUMENT', '--remove-all is for repositories (--repo); a disk has one lock');
        const removed = await breakWriterLock(disk);
        // No lock and no disk: a mistyped path must not pass for "unlocked".
        if (removed === undefined && !fs.existsSync(disk)) throw new DeltaDiskError('NOT_FOUND', `no disk at ${path.resolve(disk)}`, { path: path.resolve(disk) });
        ctx.out.result({ removed: removed ?? null });
        if (removed === undefined) ctx.out.line(`${disk} was not locked`);
        else if (removed === 'garbage') ctx.out.line(`removed an unreadable lock file of ${disk}`);
        else ctx.out.line(`removed the lock of pid ${removed.pid} on ${removed.host} (${removed.purpose}, since ${removed.started})`);
      }),
    );
}
