/**
 * `deltadisk snapshots --repo <repo>`: list the backups in a repository.
 */
import type { Command } from 'commander';
import { matchesFilter } from '../../lib/index.js';
import { handler } from '../context.js';
import { formatBytes } from '../parse-size.js';
import { shortId, withRepo, withRepoOptions, type RepoOptions } from '../repo-context.js';

export function registerSnapshots(program: Command): void {
  withRepoOptions(program.command('snapshots').description('list the backups in a repository, oldest first'))
    .option('--tag <tag>', 'only backups with this tag (repeatable)', (v: string, acc: string[]) => [...acc, v], [] as string[])
    .option('--host <name>', 'only backups of this host')
    .action(
      handler(async (ctx, o: RepoOptions & { tag: string[]; host?: string }) => {
        const filter = { host: o.host, tags: o.tag };
        const list = (await withRepo(o, false, 'snapshots', (repo) => repo.listBackups())).filter((b) => matchesFilter(b, filter));
        ctx.out.result(list.map((b) => ({ id: b.id, short_id: shortId(b.id), time: b.time, end: b.end, host: b.host, user: b.user, tags: b.tags, paths: b.paths, failed: b.failed, summary: b.summary, vm: b.vm })));
        if (list.length === 0) {
          ctx.out.line('no backups');
          return;
        }
        const vms = list.some((b) => b.vm !== null);
        ctx.out.line(`ID        TIME                      HOST            TAGS          SIZE      ${vms ? ' CONSISTENCY       FREEZE  ' : ''} PATHS`);
        for (const b of list) {
          const size = formatBytes(b.summary.bytes ?? 0);
          const vm = !vms ? '' : b.vm === null ? `${'-'.padEnd(17)} ${'-'.padStart(7)}   ` : `${b.vm.consistency.padEnd(17)} ${`${b.vm.freezeWindowMs.toFixed(1)}ms`.padStart(9)} `;
          ctx.out.line(
            `${shortId(b.id)}${b.failed ? '!' : ' '} ${b.time.replace('T', ' ').slice(0, 23).padEnd(25)} ${b.host.slice(0, 15).padEnd(15)} ${b.tags.join(',').slice(0, 13).padEnd(13)} ${size.padStart(10)} ${vm} ${b.paths.join(', ')}`,
          );
        }
        ctx.out.line(`${list.length} backup${list.length === 1 ? '' : 's'}${list.some((b) => b.failed) ? ' (! failed a check: not used as a base for incremental backups)' : ''}`);
      }),
    );
}
