/**
 * Where deltadisk keeps what it caches on this machine (the index cache of each
 * repository, the CLI's compiled code): $DELTADISK_CACHE_DIR, else
 * $XDG_CACHE_HOME/deltadisk, else ~/.cache/deltadisk (restic's and borg's
 * convention). Everything there can be deleted at any time.
 */
import os from 'node:os';
import path from 'node:path';

export function defaultCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.DELTADISK_CACHE_DIR) return path.resolve(env.DELTADISK_CACHE_DIR);
  if (env.XDG_CACHE_HOME) return path.join(path.resolve(env.XDG_CACHE_HOME), 'deltadisk');
  return path.join(os.homedir(), '.cache', 'deltadisk');
}
