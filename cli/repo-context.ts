/**
 * What the repository commands share: the `--repo` option (or DELTADISK_REPOSITORY),
 * opening the repository with the right lock and always closing it, and reporting
 * progress of long operations as a bar on a terminal or, with --json, as restic-style
 * JSON lines (`status` at most once a second, then one `summary`).
 */
import path from 'node:path';
import { Option, type Command } from 'commander';
import { DeltaDiskError, defaultCacheDir, Repository, type BackupFilter, type LockKind } from '../lib/index.js';
import type { Context } from './context.js';
import { parseCount } from './parse-size.js';
import { startProgress, type Progress } from './progress.js';

export interface RepoOptions {
  repo?: string;
  retryLock?: number;
  /** false with --no-cache: no index cache on this machine. */
  cache?: boolean;
}

/** Adds `--repo` and `--retry-lock` to a command. */
export function withRepoOptions(cmd: Command, required = true): Command {
  return cmd
    .addOption(new Option('-r, --repo <repo>', `repository directory${required ? '' : ' (required for the repository variant)'}`).env('DELTADISK_REPOSITORY'))
    .option('--retry-lock <seconds>', 'keep trying this long if the repository is locked', parseCount)
    .option('--no-cache', 'do not use or update the local cache of the repository index (DELTADISK_CACHE_DIR, else ~/.cache/deltadisk)');
}

export interface LatestFilterOptions {
  host?: string;
  path: string[];
  tag: string[];
}

/** `--host`, `--path`, `--tag`: which backups `latest` may name (restic's filters). */
export function withLatestFilterOptions(cmd: Command): Command {
  return cmd
    .option('--host <name>', 'with "latest": the newest backup of this host')
    .option('--path <path>', 'with "latest": the newest backup of this source path (repeatable)', (v: string, acc: string[]) => [...acc, v], [] as string[])
    .option('--tag <tag>', 'with "latest": the newest backup with this tag (repeatable)', (v: string, acc: string[]) => [...acc, v], [] as string[]);
}

export function latestFilter(o: LatestFilterOptions): BackupFilter {
  return {
    ...(o.host === undefined ? {} : { host: o.host }),
    ...(o.path.length === 0 ? {} : { paths: o.path.map((p) => path.resolve(p)) }),
    ...(o.tag.length === 0 ? {} : { tags: o.tag }),
  };
}

export function repoPath(o: RepoOptions): string {
  if (o.repo === undefined || o.repo === '') throw new DeltaDiskError('INVALID_ARGUMENT', 'give the repository with --repo <dir> (or DELTADISK_REPOSITORY)');
  return o.repo;
}

/** Opens the repository named by `o`, runs `fn`, closes it (a close error never hides the first one). */
export async function withRepo<T>(o: RepoOptions, lock: LockKind | false, purpose: string, fn: (repo: Repository) => Promise<T>): Promise<T> {
  const repo = await Repository.open(repoPath(o), {
    lock,
    purpose,
    retryLockMs: (o.retryLock ?? 0) * 1000,
    ...(o.cache === false ? {} : { cacheDir: defaultCacheDir() }),
  });
  let result: T;
  try {
    result = await fn(repo);
  } catch (err) {
    await repo.close().catch(() => undefined);
    throw err;
  }
  await repo.close();
  return result;
}

/** Progress of a byte-counting operation: a bar on a terminal, `status` lines with --json. */
export class StatusReporter {
  readonly #ctx: Context;
  readonly #label: string;
  readonly #started = performance.now();
  #bar: Progress | undefined;
  #done = 0;
  #lastJson = 0;

  constructor(ctx: Context, label: string) {
    this.#ctx = ctx;
    this.#label = label;
  }

  get elapsedMs(): number {
    return Math.round(performance.now() - this.#started);
  }

  /** Reports cumulative progress; `extra` goes into the JSON status line. */
  update(done: number, total: number, extra: Record<string, unknown> = {}): void {
    if (this.#bar === undefined && total > 0) this.#bar = startProgress(this.#ctx.out, this.#label, total);
    if (done > this.#done) {
      this.#bar?.add(done - this.#done);
      this.#done = done;
    }
    const now = performance.now();
    if (this.#ctx.out.json && !this.#ctx.out.quiet && now - this.#lastJson >= 1000) {
      this.#lastJson = now;
      const elapsed = (now - this.#started) / 1000;
      const rate = elapsed > 0 ? done / elapsed : 0;
      this.#ctx.out.jsonLine({
        message_type: 'status',
        percent_done: total > 0 ? Math.min(1, done / total) : 0,
        total_bytes: total,
        bytes_done: done,
        seconds_elapsed: Math.round(elapsed),
        seconds_remaining: rate > 0 && total > done ? Math.round((total - done) / rate) : 0,
        ...extra,
      });
    }
  }

  stop(): void {
    this.#bar?.stop();
    this.#bar = undefined;
  }
}

/** A per-item warning: a JSON `error` line on stderr with --json, else a warning line. */
export function reportItemError(ctx: Context, during: string, item: string, message: string, code?: string): void {
  if (ctx.out.json) ctx.out.jsonErrorLine({ message_type: 'error', error: { message, ...(code === undefined ? {} : { code }) }, during, item });
  else ctx.out.warn(`${item}: ${message}`);
}

export function shortId(id: string): string {
  return id.slice(0, 8);
}

export function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(ms < 10_000 ? 2 : 1)} s`;
}
