/**
 * The repository variant of `deltadisk check`: `check --repo <repo> [--read-data |
 * --read-data-subset n/t]`. Exit codes follow qemu-img check: 0 clean, 1 the check
 * could not run, 2 errors found, 3 only leaks (space prune reclaims).
 */
import { InvalidArgumentError } from 'commander';
import { checkRepository, type RepoCheckProblem as CheckProblem } from '../../lib/index.js';
import type { Context } from '../context.js';
import { CheckExit } from '../exit-codes.js';
import { formatBytes } from '../parse-size.js';
import { StatusReporter, withRepo, type RepoOptions } from '../repo-context.js';

export interface RepoCheckOptions extends RepoOptions {
  readData?: boolean;
  readDataSubset?: { n: number; t: number };
}

/** Parses `n/t` (1 ≤ n ≤ t). */
export function parseSubset(text: string): { n: number; t: number } {
  const m = /^(\d+)\/(\d+)$/.exec(text.trim());
  const n = Number(m?.[1]);
  const t = Number(m?.[2]);
  if (m === null || !(n >= 1 && t >= 1 && n <= t && t <= 1_000_000)) throw new InvalidArgumentError(`not a subset n/t with 1 ≤ n ≤ t: ${JSON.stringify(text)}`);
  return { n, t };
}

export async function runRepoCheck(ctx: Context, o: RepoCheckOptions): Promise<number> {
  const status = new StatusReporter(ctx, 'read data');
  try {
    const report = await withRepo(o, 'shared', 'check', (repo) =>
      checkRepository(repo, {
        readData: o.readData === true || o.readDataSubset !== undefined,
        ...(o.readDataSubset === undefined ? {} : { subset: o.readDataSubset }),
        onProblem: (p: CheckProblem) => {
          ctx.out.jsonLine({ message_type: 'problem', severity: p.severity, kind: p.kind, message: p.message, ...(p.pack ? { pack: p.pack } : {}), ...(p.backup ? { backup: p.backup } : {}) });
          ctx.out.line(`${p.severity === 'error' ? 'error' : 'leak '}: ${p.message}`);
        },
        onProgress: (p) => status.update(p.done, p.total, { phase: p.phase }),
      }),
    );
    status.stop();
    const { errors, leaks, stats } = report;
    const code = errors.length > 0 ? CheckExit.CORRUPT : leaks.length > 0 ? CheckExit.LEAKS : CheckExit.CLEAN;
    ctx.out.jsonLine({ message_type: 'summary', errors: errors.length, leaks: leaks.length, failed_backups: report.failedBackups, ...stats });
    ctx.out.line(
      `${stats.backups} backups, ${stats.packs} packs, ${stats.indexFiles} index files, ${stats.chunks} chunks` +
        (stats.packsRead > 0 ? `; read ${stats.packsRead} packs (${formatBytes(stats.bytesRead)})` : ''),
    );
    if (code === CheckExit.CLEAN) ctx.out.line('no errors were found');
    else if (code === CheckExit.LEAKS) ctx.out.line(`no errors; ${leaks.length} leak(s): unreferenced data that \`deltadisk prune\` reclaims`);
    else ctx.out.line(`${errors.length} error(s) found${report.failedBackups.length > 0 ? `; ${report.failedBackups.length} backup(s) marked failed` : ''}`);
    return code;
  } catch (err) {
    status.stop();
    ctx.out.error(err);
    return CheckExit.FAILED;
  }
}
