/**
 * The `deltadisk` executable: runs the bundled CLI (`deltadisk-cli.cjs` beside it) from
 * a V8 code cache kept in the cache directory (lib/io/cache-dir.ts).
 *
 * Why: every run is a fresh process, and V8 compiles each function the first time
 * it is called. A cold incremental backup of a 1 GiB chain spent ~30 ms of its
 * ~200 ms compiling, and start-up another ~15 ms (Node 22 has
 * module.enableCompileCache for this; Node 20 has vm.Script's cachedData).
 *
 * What it guarantees:
 *  - the cache is keyed by the bundle's SHA-256, Node's version and the CPU
 *    architecture (V8 itself checks only the source's length), so a cache never
 *    runs against other code; V8 rejects data from other flags or a damaged file,
 *    and the code is then compiled as usual;
 *  - at exit the cache is rewritten when it was missing or rejected, or when this run
 *    compiled more than it holds (so it grows to cover the commands used), written
 *    to a temporary name and renamed; files of other keys unused for a week are
 *    removed then;
 *  - finding out whether a run compiled more means serializing the cache again (~4
 *    ms), so once a run of a command (its leading words) found nothing to add (see
 *    SIZE_NOISE), the command is listed in `<cache>.covered` and its runs no longer
 *    ask; the list starts empty whenever the cache is written from scratch;
 *  - nothing about the cache can fail a command: every error is ignored.
 * `--no-cache` anywhere in the arguments, as for the index cache, skips it.
 *
 * Its first lines (cli/build-launcher.mjs) run Node with the V8 options of
 * cli/node-flags.ts (why: see there). V8 refuses a code cache made under other
 * options, so whether they were given is part of the key: a run as
 * `node deltadisk.cjs` keeps a cache of its own rather than replacing the
 * executable's at every other run.
 *
 * It imports lib/io/cache-dir.ts itself rather than through lib/index: the launcher
 * must stay a few kilobytes, loaded before anything else. It is bundled as CommonJS
 * into `dist/deltadisk.cjs`, the package's `bin` (cli/build-launcher.mjs).
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import Module from 'node:module';
import path from 'node:path';
import vm from 'node:vm';
import { defaultCacheDir } from '../lib/io/cache-dir.js';
import { NODE_FLAGS } from './node-flags.js';

const bundle = path.join(import.meta.dirname, 'deltadisk-cli.cjs');
// Module.wrap's wrapper cannot hold a #! line: it becomes a comment of the same length.
const source = fs.readFileSync(bundle, 'utf8').replace(/^#!/, '//');
const useCache = !process.argv.includes('--no-cache');
// Whether this run has the executable's options (V8 checks its options against a cache's).
const flags = NODE_FLAGS.every((f) => process.execArgv.includes(f)) ? NODE_FLAGS.join(' ') : '';
const key = `${createHash('sha256').update(source).update(`\0${flags}`).digest('hex').slice(0, 16)}-${process.version}-${process.arch}`;
const dir = defaultCacheDir();
const file = path.join(dir, `cli-${key}.v8`);

const coveredFile = `${file}.covered`;
/** The command of this run: its leading words (`vm snapshot create`), not options or paths; `-` for none. */
const command = (() => {
  const words: string[] = [];
  for (const a of process.argv.slice(2)) {
    if (!/^[a-z][a-z-]*$/.test(a) || words.length === 3) break;
    words.push(a);
  }
  return words.length === 0 ? '-' : words.join(' ');
})();

/**
 * How much larger a run's serialized cache may be and still count as adding nothing:
 * runs of the same command serialize to sizes tens of bytes apart (measured: 365440,
 * 365520 and 365448 bytes for three runs of `snapshots`), while a command the cache
 * does not cover yet adds ~15-35 KB.
 */
const SIZE_NOISE = 2048;

let cached: Buffer | undefined;
let covered = new Set<string>();
if (useCache) {
  try {
    cached = fs.readFileSync(file);
    if (fs.statSync(coveredFile).size <= 64 * 1024) covered = new Set(fs.readFileSync(coveredFile, 'utf8').split('\n').filter((l) => l !== ''));
  } catch {
    // No cache, or no list yet.
  }
}

/** Writes `data` to `target` through a temporary name (no partial file on failure). */
function replace(target: string, data: string | Uint8Array): void {
  const tmp = `${target}.tmp-${process.pid}`;
  try {
    fs.writeFileSync(tmp, data);
    fs.renameSync(tmp, target);
  } catch (err) {
    // A full device leaves no partial temporary behind.
    fs.rmSync(tmp, { force: true });
    throw err;
  }
}
const script = new vm.Script((Module as unknown as { wrap(code: string): string }).wrap(source), {
  filename: bundle,
  ...(cached === undefined ? {} : { cachedData: cached }),
});

function saveCache(): void {
  try {
    const usable = cached !== undefined && !script.cachedDataRejected;
    if (usable && covered.has(command)) return;
    const data = script.createCachedData();
    if (usable && data.length <= cached!.length + SIZE_NOISE) {
      covered.add(command);
      replace(coveredFile, [...covered].map((c) => `${c}\n`).join(''));
      return;
    }
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    replace(file, data);
    // Written from scratch, the cache holds what this run compiled alone.
    if (!usable) fs.rmSync(coveredFile, { force: true });
    // Other builds' caches go once unused for a week (not at once: two Node versions
    // taking turns would otherwise rewrite theirs on every run).
    for (const name of fs.readdirSync(dir)) {
      if (!name.startsWith('cli-') || !(name.endsWith('.v8') || name.endsWith('.v8.covered')) || name.startsWith(path.basename(file))) continue;
      const other = path.join(dir, name);
      if (Date.now() - fs.statSync(other).mtimeMs > 7 * 24 * 3600 * 1000) fs.rmSync(other, { force: true });
    }
  } catch {
    // A cache is an optimisation: a read-only or full cache directory changes nothing.
  }
}

if (useCache) process.once('exit', saveCache);
const module = { exports: {} };
(script.runInThisContext() as (...args: unknown[]) => void).call(module.exports, module.exports, createRequire(bundle), module, bundle, path.dirname(bundle));
