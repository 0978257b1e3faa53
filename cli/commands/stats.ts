/**
 * `deltadisk stats --repo <repo> [<backup>]`: logical vs stored bytes, dedup ratio.
 */
import type { Command } from 'commander';
import { repositoryStats } from '../../lib/index.js';
import { handler } from '../context.js';
import { formatBytes } from '../parse-size.js';
import { withRepo, withRepoOptions, type RepoOptions } from '../repo-context.js';

export function registerStats(program: Command): void {
  withRepoOptions(program.command('stats').description('logical size of the backups against what the repository stores'))
    .argument('[backup]', 'one backup (id, prefix or latest) instead of the whole repository')
    .action(
      handler(async (ctx, spec: string | undefined, o: RepoOptions) => {
        const s = await withRepo(o, 'shared', 'stats', async (repo) => repositoryStats(repo, spec === undefined ? undefined : await repo.resolveBackup(spec)));
        ctx.out.result(s);
        ctx.out.line(`backups:            ${s.backups}`);
        ctx.out.line(`logical size:       ${formatBytes(s.logicalBytes)} (${s.logicalBytes} bytes)`);
        ctx.out.line(`unique data:        ${formatBytes(s.uniqueBytes)} in ${s.chunks} chunks`);
        ctx.out.line(`stored (packed):    ${formatBytes(s.storedBytes)}`);
        ctx.out.line(`dedup ratio:        ${s.dedupRatio.toFixed(2)}`);
        ctx.out.line(`compression ratio:  ${s.compressionRatio.toFixed(2)}`);
        if (s.packBytes !== undefined) {
          ctx.out.line(`pack files:         ${s.packs} (${formatBytes(s.packBytes)})`);
          ctx.out.line(`unreferenced:       ${formatBytes(s.unreferencedBytes ?? 0)} (prune reclaims it)`);
        }
      }),
    );
}
