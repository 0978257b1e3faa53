/**
 * The CLI as an operator and a script see it, for the defects a review found:
 * refusals and usage errors that were plain text (or a stack trace) under --json,
 * `help` exiting 2, `unlock` misreading DELTADISK_REPOSITORY and passing a mistyped
 * path as "not locked", forget --prune mixing a JSON document with JSON lines,
 * Ctrl-C / Ctrl-D at the confirmation question reported as internal errors, a
 * closed stdout reported as success, export and convert leaving partial output on
 * SIGINT, and the README's first example not running as written.
 */
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Disk, Repository } from '../../lib/index.js';
import { CLI, lines, ok, runCli } from '../helpers/cli.js';
import { dirState, pattern } from '../helpers/disk.js';
import { startCli } from '../helpers/repo-cli.js';
import { tempDir } from '../helpers/temp-dir.js';
import { waitFor } from '../helpers/wait-for.js';

let dir: string;
let cleanup: () => void;
let file: string;

beforeEach(async () => {
  ({ dir, cleanup } = tempDir('deltadisk-cli-review-'));
  file = path.join(dir, 'disk.chain');
  const d = await Disk.create(file, { size: 1024 * 1024, blockSize: 4096 });
  await d.write(0, Buffer.alloc(4096, 1));
  await d.snapshot('one');
  await d.write(0, Buffer.alloc(4096, 2));
  await d.close();
});
afterEach(() => cleanup());

/** Every line of a --json stderr parses as an object. */
function jsonErrors(stderr: string): Record<string, unknown>[] {
  return lines(stderr).map((l) => JSON.parse(l) as Record<string, unknown>);
}

describe('--json: every error is JSON on stderr, stdout stays clean', () => {
  it('a destructive command refused without a terminal is a NOT_CONFIRMED object (exit 2), nothing changed', async () => {
    const before = dirState(dir);
    for (const args of [
      ['snapshot', 'revert', file, 'one'],
      ['snapshot', 'delete', file, 'one'],
    ]) {
      const r = await runCli(['--json', ...args]);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stdout).toBe('');
      expect(jsonErrors(r.stderr)).toEqual([{ type: 'error', code: 'NOT_CONFIRMED', message: expect.stringMatching(/pass --yes/) }]);
    }
    expect(dirState(dir)).toEqual(before);
    // Without --json the refusal stays a sentence.
    const human = await runCli(['snapshot', 'revert', file, 'one']);
    expect(human.code).toBe(2);
    expect(human.stderr).toMatch(/^deltadisk: .*Refusing without a terminal to ask; pass --yes to confirm\n$/);
  });

  it('no command given is a USAGE object, not the help text', async () => {
    for (const args of [['--json'], ['--json', 'snapshot']]) {
      const r = await runCli(args);
      expect(r.code).toBe(2);
      expect(r.stdout).toBe('');
      expect(jsonErrors(r.stderr)).toEqual([{ type: 'error', code: 'USAGE', message: expect.any(String) }]);
    }
    // Without --json: the help, on stderr.
    const human = await runCli(['snapshot']);
    expect(human.code).toBe(2);
    expect(human.stderr).toMatch(/^Usage: deltadisk snapshot/);
  });

  it('an invalid --repack-threshold or --threshold is a usage error (exit 2), never a stack trace', async () => {
    for (const args of [
      ['prune', '--repo', path.join(dir, 'repo'), '--repack-threshold', '5'],
      ['prune', '--repo', path.join(dir, 'repo'), '--repack-threshold', 'abc'],
      ['compact', file, '--threshold', '0.5abc'],
    ]) {
      const r = await runCli(args);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stderr).not.toMatch(/^\s+at /m);
      expect(r.stderr).toMatch(/not a fraction in \(0, 1\]/);
      const j = await runCli(['--json', ...args]);
      expect(j.code).toBe(2);
      expect(jsonErrors(j.stderr)).toEqual([{ type: 'error', code: 'USAGE', message: expect.stringMatching(/not a fraction/) }]);
    }
  });
});

describe('help', () => {
  it('`help` and `help <command>` print on stdout and exit 0', async () => {
    const all = await ok(['help']);
    expect(all.stdout).toMatch(/^Usage: deltadisk \[options\] \[command\]/);
    const create = await ok(['help', 'create']);
    expect(create.stdout).toMatch(/^Usage: deltadisk create \[options\] <disk>/);
    const nested = await ok(['snapshot', 'help', 'revert']);
    expect(nested.stdout).toMatch(/^Usage: deltadisk snapshot revert/);
  });
});

describe('unlock <disk>', () => {
  it('works with DELTADISK_REPOSITORY set; --repo given with a disk is refused', async () => {
    const env = { DELTADISK_REPOSITORY: path.join(dir, 'repo') };
    const r = await runCli(['unlock', file], { env });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/was not locked/);
    expect((await runCli(['unlock', file, '--repo', path.join(dir, 'repo')])).code).toBe(2);
  });

  it('a path with neither a disk nor a lock is exit 10; --remove-all with a disk is exit 2', async () => {
    const missing = await runCli(['--json', 'unlock', path.join(dir, 'nope.chain')]);
    expect(missing.code).toBe(10);
    expect(jsonErrors(missing.stderr)[0]).toMatchObject({ code: 'NOT_FOUND' });
    expect((await runCli(['unlock', file, '--remove-all'])).code).toBe(2);
  });
});

/** A repository (returned) with two backups of a directory whose one file changed between them. */
async function twoBackups(): Promise<string> {
  const repo = path.join(dir, 'repo');
  const src = path.join(dir, 'src');
  fs.mkdirSync(src);
  await ok(['repo', 'init', repo]);
  for (let i = 0; i < 2; i++) {
    fs.writeFileSync(path.join(src, 'f'), pattern(100_000, i));
    await ok(['backup', src, '--repo', repo]);
  }
  return repo;
}

describe('forget --prune --json', () => {
  it('stdout is JSON lines: the forget line, then the prune summary', async () => {
    const repo = await twoBackups();
    const r = await ok(['forget', '--repo', repo, '--keep-last', '1', '--prune', '--yes', '--json']);
    const out = lines(r.stdout).map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(out).toHaveLength(2);
    expect(out[0]).toMatchObject({ dry_run: false, removed: [expect.any(String)] });
    expect(out[1]).toMatchObject({ message_type: 'summary', completed: true });
  });
});

describe('a closed stdout', () => {
  it('ends the command quietly with 141, not 0, when its work was cut short', async () => {
    const commands = Array.from({ length: 3000 }, (_, i) => ['-c', `write -P 1 ${(i % 256) * 4096} 4k`]).flat();
    const child = spawn(process.execPath, [CLI, 'io', file, ...commands], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.stdout.once('data', () => child.stdout.destroy());
    const code = await new Promise<number | null>((resolve) => child.on('close', (c) => resolve(c)));
    expect(code).toBe(141);
    expect(stderr).toBe('');
  });
});

/** A disk of 512 MiB of one repeated block (deduplicated, so quick to make and small in a repository): long enough to interrupt reading or writing it whole. */
async function bigDisk(): Promise<string> {
  const big = path.join(dir, 'big.chain');
  const d = await Disk.create(big, { size: 512 * 2 ** 20 });
  const chunk = Buffer.concat(Array.from({ length: 64 }, () => pattern(65536, 7)));
  for (let at = 0; at < d.virtualSize; at += chunk.length) await d.write(at, chunk);
  await d.close();
  return big;
}

describe('SIGINT during export and convert', () => {
  for (const [what, output, appeared] of [
    ['export to a raw image', 'out.raw', (names: string[]) => names.some((n) => n.startsWith('out.raw.tmp-'))],
    ['convert to a chain', 'out.chain', (names: string[]) => names.includes('out.chain')],
  ] as const) {
    it(`${what}: exit 130, nothing half-written left behind`, async () => {
      const big = await bigDisk();
      const before = fs.readdirSync(dir).sort();
      const { child, done } = startCli([what.startsWith('export') ? 'export' : 'convert', big, '-o', path.join(dir, output)]);
      await waitFor(() => appeared(fs.readdirSync(dir)) || child.exitCode !== null);
      child.kill('SIGINT');
      const r = await done;
      expect(r.code, r.stderr).toBe(130);
      expect(r.stderr).toMatch(/\[INTERRUPTED\]/);
      expect(fs.readdirSync(dir).sort()).toEqual(before);
    });
  }
});

describe('SIGINT during a backup or a restore', () => {
  it('restore: exit 130, the file being written removed, nothing else left in the target', async () => {
    const big = await bigDisk();
    const repo = path.join(dir, 'repo');
    await ok(['repo', 'init', repo]);
    await ok(['backup', big, '--repo', repo]);
    const target = path.join(dir, 'target');
    const { child, done } = startCli(['restore', 'latest', '--repo', repo, '--target', target, '--flatten']);
    await waitFor(() => (fs.existsSync(target) && fs.readdirSync(target).some((n) => n.startsWith('big.raw.tmp-'))) || child.exitCode !== null);
    child.kill('SIGINT');
    const r = await done;
    expect(r.code, r.stderr).toBe(130);
    expect(r.stderr).toMatch(/SIGINT received: stopping; the file being written is removed/);
    expect(r.stderr).toMatch(/\[INTERRUPTED\]/);
    expect(fs.readdirSync(target)).toEqual([]);
    expect(fs.readdirSync(path.join(repo, 'locks'))).toEqual([]);
  });

  it('backup: exit 130 at the next chunk, nothing published, no anchor left on the disk, the repository lock released', async () => {
    const big = await bigDisk();
    const repo = path.join(dir, 'repo');
    await ok(['repo', 'init', repo]);
    const locks = path.join(repo, 'locks');
    const { child, done } = startCli(['backup', big, '--repo', repo]);
    // The anchor is taken once the repository is locked and the disk opened.
    await waitFor(() => fs.readFileSync(big, 'utf8').includes('deltadisk-backup-') || child.exitCode !== null);
    child.kill('SIGINT');
    const r = await done;
    expect(r.code, r.stderr).toBe(130);
    expect(r.stderr).toMatch(/SIGINT received: stopping at the next chunk; nothing is published/);
    expect(r.stderr).toMatch(/\[INTERRUPTED\]/);
    expect(fs.readdirSync(locks)).toEqual([]);
    expect(JSON.parse((await ok(['snapshots', '--repo', repo, '--json'])).stdout)).toEqual([]);
    const after = await Disk.open(big, { readOnly: true });
    expect(after.snapshots()).toEqual([]);
    await after.close();
  });
});

describe('SIGINT during a prune', () => {
  it('waiting for an earlier operation: exit 130 at once, the plan left for the next prune, its lock released', async () => {
    const repo = await twoBackups();
    await ok(['forget', '--repo', repo, '--keep-last', '1', '--yes']);
    // An operation that started earlier (this process's lock): prune plans, then waits for it.
    const holder = await Repository.open(repo, { lock: 'shared', purpose: 'a restore that started earlier' });
    try {
      const { child, done } = startCli(['prune', '--repo', repo, '--yes']);
      await waitFor(() => fs.existsSync(path.join(repo, 'plans', 'prune')) || child.exitCode !== null);
      const t0 = Date.now();
      child.kill('SIGINT');
      const r = await done;
      expect(r.code, r.stderr).toBe(130);
      expect(Date.now() - t0).toBeLessThan(10_000); // not the hour it would wait
      expect(r.stderr).toMatch(/SIGINT received: stopping at the next step/);
      expect(r.stderr).toMatch(/plan stays.*\[INTERRUPTED\]/);
      expect(fs.readdirSync(path.join(repo, 'plans'))).toEqual(['prune']);
      expect(fs.readdirSync(path.join(repo, 'locks'))).toHaveLength(1); // the holder's only
    } finally {
      await holder.close();
    }
    const r = await ok(['prune', '--repo', repo, '--yes', '--json']);
    expect(JSON.parse(lines(r.stdout).at(-1)!)).toMatchObject({ message_type: 'summary', completed: true });
    expect(fs.readdirSync(path.join(repo, 'plans'))).toEqual([]);
  });
});

describe('the confirmation question on a terminal', () => {
  // A terminal needs a pty: util-linux `script` gives one where it exists.
  const hasScript = process.platform === 'linux' && spawnSync('script', ['--version']).status === 0;

  async function answer(keys: string): Promise<{ code: number | null; output: string }> {
    const cmd = [process.execPath, CLI, 'snapshot', 'revert', file, 'one'].map((a) => `'${a}'`).join(' ');
    const child = spawn('script', ['-qec', cmd, '/dev/null'], { stdio: ['pipe', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    await waitFor(() => output.includes('[y/N]') || child.exitCode !== null);
    child.stdin.write(keys);
    const code = await new Promise<number | null>((resolve) => child.on('close', (c) => resolve(c)));
    return { code, output };
  }

  it.skipIf(!hasScript)('Ctrl-D is a no (exit 2), Ctrl-C an interruption (exit 130); neither is an internal error or changes anything', async () => {
    const before = dirState(dir);
    const eof = await answer('\x04');
    expect(eof.code).toBe(2);
    expect(eof.output).toMatch(/not confirmed/);
    const intr = await answer('\x03');
    expect(intr.code).toBe(130);
    expect(intr.output).toMatch(/\[INTERRUPTED\]/);
    for (const o of [eof.output, intr.output]) expect(o).not.toMatch(/internal error/);
    expect(dirState(dir)).toEqual(before);
  });
});

describe('README', () => {
  it('the first CLI example runs as written, in order (serve left out: it runs until stopped)', async () => {
    const readme = fs.readFileSync(path.resolve(import.meta.dirname, '../../README.md'), 'utf8');
    const block = readme.split('## The CLI')[1]!.split('```sh\n')[1]!.split('```')[0]!;
    const work = path.join(dir, 'readme');
    fs.mkdirSync(path.join(work, 'vm'), { recursive: true });
    const commands = lines(block)
      .map((l) => l.replace(/\s+#.*$/, ''))
      .filter((l) => l.startsWith('deltadisk ') && !l.startsWith('deltadisk serve '));
    expect(commands.length).toBeGreaterThan(5);
    for (const c of commands) {
      const args = [...c.slice('deltadisk '.length).matchAll(/"([^"]*)"|(\S+)/g)].map((m) => m[1] ?? m[2]!);
      const r = await runCli(args, { cwd: work });
      expect(r.code, `${c}\n${r.stderr}`).toBe(0);
    }
  });
});
