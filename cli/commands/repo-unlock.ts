/**
 * The repository variant of `deltadisk unlock`: `unlock --repo <repo> [--remove-all]`.
 * Removes locks whose holders are gone (provably, or silent for 30 minutes) and
 * unreadable lock files; `--remove-all` removes every lock (asks first).
 */
import { breakRepoLocks, Repository } from '../../lib/index.js';
import { confirm } from '../confirm.js';
import type { Context } from '../context.js';
import { repoPath, type RepoOptions } from '../repo-context.js';

export async function runRepoUnlock(ctx: Context, o: RepoOptions & { removeAll?: boolean }): Promise<void> {
  const repo = await Repository.open(repoPath(o), { lock: false });
  try {
    if (o.removeAll) await confirm(`Remove every lock of ${repo.location}, including those of running processes?`, ctx.globals.yes);
    const removed = await breakRepoLocks(repo.backend, o.removeAll === true);
    ctx.out.result({ removed: removed.map((l) => ({ name: l.name, state: l.state, holder: l.info ?? null })) });
    if (removed.length === 0) ctx.out.line('no stale locks');
    for (const l of removed) {
      ctx.out.line(l.info === undefined ? `removed unreadable lock ${l.name}` : `removed ${l.state} ${l.info.kind} lock of pid ${l.info.pid} on ${l.info.host} (${l.info.purpose}, since ${l.info.created})`);
    }
  } finally {
    await repo.close();
  }
}
