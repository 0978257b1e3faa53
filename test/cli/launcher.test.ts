/**
 * The executable's code cache (cli/launcher.ts): written to DELTADISK_CACHE_DIR by a
 * run, kept while it covers what runs compile (the commands found to add nothing are
 * listed, and then no longer checked), replaced when damaged (the command still works), files of other builds removed once unused for a week; nothing with
 * --no-cache, and nothing lost when the directory cannot be written.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { NODE_FLAGS } from '../../cli/node-flags.js';
import { CLI, runCli } from '../helpers/cli.js';
import { tempDir } from '../helpers/temp-dir.js';

let dir: string;
let cleanup: () => void;
let cacheDir: string;

beforeEach(() => {
  ({ dir, cleanup } = tempDir('deltadisk-launcher-'));
  cacheDir = path.join(dir, 'cache');
});
afterEach(() => cleanup());

const env = (): Record<string, string> => ({ DELTADISK_CACHE_DIR: cacheDir });
const codeCaches = (): string[] => (fs.existsSync(cacheDir) ? fs.readdirSync(cacheDir).filter((n) => n.startsWith('cli-') && n.endsWith('.v8')) : []);

describe('deltadisk executable', () => {
  it('keeps a code cache, replaces a damaged one, and drops those of other builds', async () => {
    const first = await runCli(['--version'], { env: env() });
    expect(first.code).toBe(0);
    const [name] = codeCaches();
    expect(name).toMatch(/^cli-[0-9a-f]{16}-v\d+\.\d+\.\d+-\w+\.v8$/);
    const file = path.join(cacheDir, name!);
    const size = fs.statSync(file).size;
    expect(size).toBeGreaterThan(1000);
    const covered = `${file}.covered`;
    const coveredList = (): string[] => (fs.existsSync(covered) ? fs.readFileSync(covered, 'utf8').split('\n').filter((l) => l !== '') : []);
    // Written from scratch: no command is known to be covered yet. Once a run of the
    // same command adds nothing (the second or third: a run from the cache takes a
    // path or two the first did not), it says so, and the cache stays as it is.
    expect(coveredList()).toEqual([]);
    for (let i = 0; i < 3 && coveredList().length === 0; i++) expect((await runCli(['--version'], { env: env() })).code).toBe(0);
    expect(coveredList()).toEqual(['-']);
    const stable = fs.statSync(file).size;
    expect(stable).toBeGreaterThanOrEqual(size);
    expect((await runCli(['--version'], { env: env() })).code).toBe(0);
    expect(fs.statSync(file).size).toBe(stable);
    // A run that compiles more (a whole command) grows it; the list stands.
    const repo = path.join(dir, 'repo');
    expect((await runCli(['repo', 'init', repo], { env: env() })).code).toBe(0);
    expect(fs.statSync(file).size).toBeGreaterThan(stable);
    expect(coveredList()).toEqual(['-']);
    for (let i = 0; i < 3 && !coveredList().includes('snapshots'); i++) expect((await runCli(['snapshots', '--repo', repo], { env: env() })).code).toBe(0);
    expect(coveredList().sort()).toEqual(['-', 'snapshots']);
    // Damaged: V8 refuses it, the command runs as usual, and the cache is written anew.
    fs.writeFileSync(file, Buffer.alloc(5000, 0x5a));
    const old = path.join(cacheDir, 'cli-0000000000000000-v0.0.0-x64.v8');
    fs.writeFileSync(old, 'from another build, unused for a month');
    const month = new Date(Date.now() - 30 * 24 * 3600 * 1000);
    fs.utimesSync(old, month, month);
    const recent = 'cli-1111111111111111-v0.0.0-x64.v8';
    fs.writeFileSync(path.join(cacheDir, recent), 'from another build, used today');
    const again = await runCli(['--version'], { env: env() });
    expect(again.code).toBe(0);
    expect(again.stdout).toBe(first.stdout);
    expect(fs.readFileSync(file).equals(Buffer.alloc(5000, 0x5a))).toBe(false);
    expect(coveredList()).toEqual([]); // written from scratch again
    expect(codeCaches().sort()).toEqual([name, recent].sort());
  });

  it('writes nothing with --no-cache, and runs when the cache directory cannot be written', async () => {
    const repo = path.join(dir, 'repo');
    expect((await runCli(['repo', 'init', repo], { env: { DELTADISK_CACHE_DIR: path.join(dir, 'elsewhere') } })).code).toBe(0);
    const r = await runCli(['snapshots', '--repo', repo, '--no-cache'], { env: env() });
    expect(r.code, r.stderr).toBe(0);
    expect(fs.existsSync(cacheDir)).toBe(false);
    fs.writeFileSync(cacheDir, 'a file where the cache directory should be');
    const blocked = await runCli(['--version'], { env: env() });
    expect(blocked.code).toBe(0);
    expect(blocked.stderr).toBe('');
  });

  it('runs Node with the V8 options of cli/node-flags.ts, and keeps the code cache of runs without them apart', () => {
    // /bin/sh reads the first two lines and execs Node with the options (no `env -S`,
    // which BusyBox lacks); Node reads them as a #! line, a string and a comment.
    expect(fs.readFileSync(CLI, 'utf8').split('\n', 2)).toEqual(['#!/bin/sh', `":" //; exec node ${NODE_FLAGS.join(' ')} "$0" "$@"`]);
    const run = (cmd: string, args: string[]): string => {
      const r = spawnSync(cmd, args, { env: { ...process.env, ...env() }, encoding: 'utf8' });
      expect(r.status, r.stderr).toBe(0);
      return r.stdout;
    };
    // Through a link in another directory with a space in its name, as a package
    // manager installs it: the arguments arrive whole, and the bundle is found.
    const bin = path.join(dir, 'bin dir');
    fs.mkdirSync(bin);
    fs.symlinkSync(CLI, path.join(bin, 'deltadisk'));
    const repo = path.join(dir, 'a repo');
    expect(run(path.join(bin, 'deltadisk'), ['repo', 'init', repo])).toContain(repo);
    const version = run(path.join(bin, 'deltadisk'), ['--version']);
    // The run had the options: its cache is not the one a plain `node` run uses.
    expect(codeCaches()).toHaveLength(1);
    // Run through `node` without them: another key, so neither replaces the other.
    expect(run(process.execPath, [CLI, '--version'])).toBe(version);
    const both = codeCaches();
    expect(both).toHaveLength(2);
    // Taking turns, each cache comes to cover the command, and stays so: a cache V8
    // refused would be written from scratch, its list of covered commands emptied.
    const covered = (): string[] => both.map((n) => (fs.existsSync(path.join(cacheDir, `${n}.covered`)) ? fs.readFileSync(path.join(cacheDir, `${n}.covered`), 'utf8') : ''));
    for (let i = 0; i < 4 && covered().some((c) => c === ''); i++) {
      run(CLI, ['--version']);
      run(process.execPath, [CLI, '--version']);
    }
    expect(covered()).toEqual(['-\n', '-\n']);
    run(CLI, ['--version']);
    run(process.execPath, [CLI, '--version']);
    expect(covered()).toEqual(['-\n', '-\n']);
    expect(codeCaches()).toEqual(both);
  });
});
