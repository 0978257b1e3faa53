/**
 * The repository variant of `deltadisk diff`: `diff <backup-a> <backup-b> --repo <repo>`.
 */
import { diffBackups } from '../../lib/index.js';
import type { Context } from '../context.js';
import { formatBytes } from '../parse-size.js';
import { shortId, withRepo, type RepoOptions } from '../repo-context.js';

export async function runRepoDiff(ctx: Context, a: string, b: string, o: RepoOptions): Promise<void> {
  const d = await withRepo(o, 'shared', 'diff', async (repo) => diffBackups(repo, await repo.resolveBackup(a), await repo.resolveBackup(b)));
  ctx.out.result(d);
  ctx.out.line(`comparing backup ${shortId(d.a)} to ${shortId(d.b)}:`);
  for (const i of d.items) {
    const bytes = i.change === 'M' ? `  (+${formatBytes(i.bytesAdded ?? 0)} -${formatBytes(i.bytesRemoved ?? 0)})` : '';
    ctx.out.line(`${i.change}  ${i.path}${i.type === 'dir' ? '/' : ''}${i.note ? `  [${i.note}]` : ''}${bytes}`);
  }
  const s = d.stats;
  ctx.out.line(`${s.added} added, ${s.removed} removed, ${s.modified} modified, ${s.typeChanged} changed type, ${s.metadata} metadata only; data +${formatBytes(s.bytesAdded)} -${formatBytes(s.bytesRemoved)}`);
}
