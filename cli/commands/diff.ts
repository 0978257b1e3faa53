/**
 * `deltadisk diff`: for now only the repository variant (`--repo`); the disk variant
 * (`deltadisk diff <disk> <snapA> [snapB]`) dispatches here when merged.
 */
import type { Command } from 'commander';
import { DeltaDiskError } from '../../lib/index.js';
import { handler } from '../context.js';
import { withRepoOptions, type RepoOptions } from '../repo-context.js';
import { runRepoDiff } from './repo-diff.js';

export function registerDiff(program: Command): void {
  withRepoOptions(program.command('diff').description('show what changed between two backups of a repository'), false)
    .argument('<a>', 'older backup (id, prefix or latest)')
    .argument('<b>', 'newer backup')
    .action(
      handler(async (ctx, a: string, b: string, o: RepoOptions) => {
        if (o.repo === undefined) throw new DeltaDiskError('INVALID_ARGUMENT', 'diff needs --repo <repo> (comparing disk snapshots is not available in this build)');
        await runRepoDiff(ctx, a, b, o);
      }),
    );
}
