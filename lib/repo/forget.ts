/**
 * `forget`: removing backups a retention policy no longer keeps.
 *
 * Backups are grouped by host and source paths (a policy applies to each series
 * separately) and optionally filtered by tag. Forgetting deletes manifests only; the
 * data they alone referenced is reclaimed by `prune`. Runs under the maintenance
 * lock, so it never races another forget or prune, while backups go on.
 */
import type { BackupInfo, Repository } from './repository.js';
import { applyRetention, type RetentionPolicy } from './retention.js';

export interface ForgetOptions extends RetentionPolicy {
  readonly dryRun?: boolean;
  /** Consider only backups carrying all of these tags. */
  readonly tags?: readonly string[];
  /** Days and weeks in UTC instead of local time. */
  readonly utc?: boolean;
  /**
   * Forget only backups among these (the ones a confirmation showed): a backup the
   * policy drops only because of backups made since stays, kept as `unconfirmed`.
   */
  readonly only?: ReadonlySet<string>;
}

export interface ForgetGroup {
  readonly host: string;
  readonly paths: readonly string[];
  readonly keep: { readonly id: string; readonly time: string; readonly reasons: readonly string[] }[];
  readonly remove: { readonly id: string; readonly time: string }[];
}

export interface ForgetResult {
  readonly dryRun: boolean;
  readonly groups: ForgetGroup[];
  readonly removed: string[];
}

export async function forget(repo: Repository, options: ForgetOptions): Promise<ForgetResult> {
  const lock = options.dryRun ? undefined : repo.assertLocked('maintenance', 'exclusive');
  const all = (await repo.listBackups()).filter((b) => (options.tags ?? []).every((t) => b.tags.includes(t)));
  const groups = new Map<string, BackupInfo[]>();
  for (const b of all) {
    const key = JSON.stringify([b.host, [...b.paths].sort()]);
    groups.set(key, [...(groups.get(key) ?? []), b]);
  }
  const out: ForgetGroup[] = [];
  const removed: string[] = [];
  for (const list of groups.values()) {
    const decision = applyRetention(list.map((b) => ({ ...b, quiesced: b.vm?.consistency === 'quiesced' })), options, options.utc ?? false);
    const timeOf = new Map(list.map((b) => [b.id, b.time]));
    const only = options.only;
    const doomed = only === undefined ? decision.remove : decision.remove.filter((id) => only.has(id));
    const spared = only === undefined ? [] : decision.remove.filter((id) => !only.has(id));
    out.push({
      host: list[0]!.host,
      paths: list[0]!.paths,
      keep: [...decision.keep.map((k) => ({ id: k.id, time: timeOf.get(k.id)!, reasons: k.reasons })), ...spared.map((id) => ({ id, time: timeOf.get(id)!, reasons: ['unconfirmed'] }))],
      remove: doomed.map((id) => ({ id, time: timeOf.get(id)! })),
    });
    if (options.dryRun) continue;
    for (const id of doomed) {
      await lock!.assertValid();
      if (await repo.backend.remove('snapshot', id)) removed.push(id);
      await repo.backend.remove('verify', id);
    }
  }
  return { dryRun: options.dryRun === true, groups: out, removed };
}
