/**
 * `deltadisk check`: for now only the repository variant (`--repo`); the disk variant
 * (`deltadisk check <disk>`) dispatches here when merged.
 */
import type { Command } from 'commander';
import { DeltaDiskError } from '../../lib/index.js';
import { handler } from '../context.js';
import { withRepoOptions } from '../repo-context.js';
import { parseSubset, runRepoCheck, type RepoCheckOptions } from './repo-check.js';

export function registerCheck(program: Command): void {
  withRepoOptions(program.command('check').description('check a backup repository for damage (0 clean, 2 errors, 3 leaks only)'), false)
    .argument('[disk]', 'a disk to check (not yet: give --repo)')
    .option('--read-data', 'also read and hash every chunk')
    .option('--read-data-subset <n/t>', 'read and hash the chunks of part n of t (rotate n over runs)', parseSubset)
    .action(
      handler(async (ctx, disk: string | undefined, o: RepoCheckOptions) => {
        if (o.repo === undefined || disk !== undefined) throw new DeltaDiskError('INVALID_ARGUMENT', 'check needs --repo <repo> (checking a disk is not available in this build)');
        return runRepoCheck(ctx, o);
      }),
    );
}
