/**
 * `deltadisk ls <backup-id|latest> --repo <repo> [<path>…]`: what a backup holds, as
 * `ls -l` would show it (restic's `ls`), so an operator can name what to restore with
 * `restore --include` or `vm restore --file`. Entries in the order the backup stores
 * them (a directory before what it holds); with paths, only those entries and what is
 * below them. `--json`: one JSON line per entry.
 */
import type { Command } from 'commander';
import { DeltaDiskError, type Entry } from '../../lib/index.js';
import { handler, type Context } from '../context.js';
import { ExitCode } from '../exit-codes.js';
import { formatBytes } from '../parse-size.js';
import { latestFilter, withLatestFilterOptions, withRepo, withRepoOptions, type LatestFilterOptions, type RepoOptions } from '../repo-context.js';

interface LsCliOptions extends RepoOptions, LatestFilterOptions {
  long?: boolean;
}

const TYPE_CHAR: Record<string, string> = { file: '-', dir: 'd', symlink: 'l', chain: 'D', blockdev: 'b', chardev: 'c', fifo: 'p', socket: 's' };

/** `rwxr-x---` of a mode's permission bits. */
function permissions(mode: number): string {
  let out = '';
  for (let shift = 6; shift >= 0; shift -= 3) {
    const bits = (mode >> shift) & 7;
    out += `${bits & 4 ? 'r' : '-'}${bits & 2 ? 'w' : '-'}${bits & 1 ? 'x' : '-'}`;
  }
  return out;
}

function sizeOf(e: Entry): number | undefined {
  if (e.type === 'file') return e.size;
  if (e.type === 'chain') return e.chain.virtualSize;
  return undefined;
}

function topLevel(entries: readonly Entry[]): string {
  const names = [...new Set(entries.map((e) => e.path.split('/')[0]!))];
  return names.length === 0 ? 'empty' : names.slice(0, 5).join(', ') + (names.length > 5 ? ', …' : '');
}

function under(p: string, prefixes: readonly string[]): boolean {
  return prefixes.length === 0 || prefixes.some((q) => p === q || p.startsWith(`${q}/`));
}

async function run(ctx: Context, spec: string, paths: string[], o: LsCliOptions): Promise<number> {
  const prefixes = paths.map((p) => p.replace(/\/+$/, ''));
  const manifest = await withRepo(o, 'shared', 'ls', async (repo) => repo.loadManifest(await repo.resolveBackup(spec, latestFilter(o))));
  const entries = manifest.entries.filter((e) => under(e.path, prefixes));
  if (prefixes.length > 0 && entries.length === 0) {
    throw new DeltaDiskError('NOT_FOUND', `backup ${manifest.id.slice(0, 8)} holds nothing at ${prefixes.map((p) => JSON.stringify(p)).join(', ')} (its top level: ${topLevel(manifest.entries)})`);
  }
  for (const e of entries) {
    const size = sizeOf(e);
    ctx.out.jsonLine({
      message_type: 'node',
      path: e.path,
      type: e.type,
      mode: e.mode & 0o7777,
      mtime: new Date(e.mtimeMs).toISOString(),
      ...(size === undefined ? {} : { size }),
      ...(e.type === 'symlink' ? { target: e.target } : {}),
      ...(e.type === 'chain' ? { snapshots: e.chain.points.map((p) => p.name) } : {}),
    });
    if (o.long !== true) {
      ctx.out.line(e.type === 'dir' ? `${e.path}/` : e.path);
      continue;
    }
    const when = new Date(e.mtimeMs).toISOString().replace('T', ' ').slice(0, 19);
    const shown = size === undefined ? '' : formatBytes(size);
    const extra = e.type === 'symlink' ? ` -> ${e.target}` : e.type === 'chain' && e.chain.points.length > 0 ? `  (disk; snapshots: ${e.chain.points.map((p) => p.name).join(', ')})` : e.type === 'chain' ? '  (disk)' : '';
    ctx.out.line(`${TYPE_CHAR[e.type] ?? '?'}${permissions(e.mode)} ${shown.padStart(10)} ${when}  ${e.path}${extra}`);
  }
  return ExitCode.OK;
}

export function registerLs(program: Command): void {
  withLatestFilterOptions(
    withRepoOptions(
      program
        .command('ls')
        .description('list what a backup holds (to name what to restore)')
        .argument('<backup>', 'backup id, unique id prefix, or "latest"')
        .argument('[path...]', 'only these paths of the backup and what is below them'),
    ),
  )
    .option('-l, --long', 'show type, mode, size and modification time')
    .action(handler((ctx, spec: string, paths: string[], o: LsCliOptions) => run(ctx, spec, paths, o)));
}
