/**
 * The deltadisk command line. Commands live one group per file in cli/commands;
 * this file only wires them together and maps commander's own errors (unknown
 * option, missing argument) to exit code 2. The build bundles it into
 * dist/deltadisk-cli.cjs, which the executable (launcher.ts) runs.
 */
import { Command, CommanderError, Option } from 'commander';
import { registerBackup } from './commands/backup.js';
import { registerCheck } from './commands/check.js';
import { registerCreate } from './commands/create.js';
import { registerDemo } from './commands/demo.js';
import { registerDiff } from './commands/diff.js';
import { registerExport } from './commands/export.js';
import { registerForget } from './commands/forget.js';
import { registerInfo } from './commands/info.js';
import { registerIo } from './commands/io.js';
import { registerMaintain } from './commands/maintain.js';
import { registerMap } from './commands/map.js';
import { registerPrune } from './commands/prune.js';
import { registerRepo } from './commands/repo.js';
import { registerRestore } from './commands/restore.js';
import { registerServe } from './commands/serve.js';
import { registerSnapshot } from './commands/snapshot.js';
import { registerLs } from './commands/ls.js';
import { registerSnapshots } from './commands/snapshots.js';
import { registerStats } from './commands/stats.js';
import { registerUnlock } from './commands/unlock.js';
import { registerVm } from './commands/vm.js';
import { ExitCode } from './exit-codes.js';
import { Output } from './output.js';

const json = (): boolean => process.argv.includes('--json');

export function buildProgram(): Command {
  const program = new Command('deltadisk')
    .description('copy-on-write virtual disks with O(1) snapshots, and crash-consistent, deduplicated VM backups')
    .version('0.1.0', '-V, --version')
    .option('--json', 'machine-readable output on stdout (errors as JSON on stderr)')
    .option('-q, --quiet', 'no progress or notes on stderr')
    .addOption(new Option('--progress', 'show progress bars even when stderr is not a terminal'))
    .addOption(new Option('--no-progress', 'never show progress bars'))
    .option('-y, --yes', 'confirm destructive actions without asking')
    .option('--allow-path <path>', 'trust this file or directory outside a disk\'s directory (repeatable; also DELTADISK_ALLOW_PATHS)', (v: string, acc: string[]) => [...acc, v], [] as string[])
    .showHelpAfterError(json() ? false : '(add --help for usage)')
    .configureOutput({
      // Commander reports usage mistakes itself; with --json they are JSON like every other error,
      // and the help it shows on stderr for a missing command gives way to one (see main).
      outputError: (text, write) => {
        if (json()) {
          const message = text.replace(/^error: /, '').split('\n')[0]!.trim();
          process.stderr.write(`${JSON.stringify({ type: 'error', code: 'USAGE', message })}\n`);
        } else {
          write(text);
        }
      },
      writeErr: (text) => {
        if (!json()) process.stderr.write(text);
      },
    })
    .exitOverride();
  registerCreate(program);
  registerInfo(program);
  registerIo(program);
  registerSnapshot(program);
  registerExport(program);
  registerMaintain(program);
  registerCheck(program);
  registerMap(program);
  registerDiff(program);
  registerUnlock(program);
  registerVm(program);
  registerServe(program);
  registerRepo(program);
  registerBackup(program);
  registerSnapshots(program);
  registerLs(program);
  registerRestore(program);
  registerForget(program);
  registerPrune(program);
  registerStats(program);
  registerDemo(program);
  program.commands.forEach(function override(c: Command): void {
    c.exitOverride();
    c.commands.forEach(override);
  });
  return program;
}

export async function main(argv: readonly string[]): Promise<void> {
  // A reader that goes away (`deltadisk map … | head`) ends us quietly, as SIGPIPE ends
  // cat: with 141, because what was left to do (and to print) was not done.
  for (const stream of [process.stdout, process.stderr]) {
    stream.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'EPIPE') process.exit(ExitCode.BROKEN_PIPE);
      throw err;
    });
  }
  const program = buildProgram();
  try {
    await program.parseAsync(argv as string[]);
  } catch (err) {
    if (err instanceof CommanderError) {
      // Help asked for (--help, `help [command]`) is success; help shown because no
      // command was given is a usage error (commander gives it exit code 1).
      const ok = err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || (err.code === 'commander.help' && err.exitCode === 0);
      if (!ok && err.code === 'commander.help' && json()) {
        process.stderr.write(`${JSON.stringify({ type: 'error', code: 'USAGE', message: 'no command given (see --help)' })}\n`);
      }
      process.exitCode = ok ? ExitCode.OK : ExitCode.USAGE;
      return;
    }
    throw err;
  }
}

// Not a top-level await: the bundle is CommonJS (launcher.ts runs it from a code cache).
// Whatever escapes the handlers (say, an option parser throwing the wrong kind of error)
// is reported like any error, never as a bare stack trace.
main(process.argv).catch((err: unknown) => {
  process.exitCode = new Output({ json: json(), quiet: false, progress: undefined, yes: false, allowPath: [] }).error(err);
});
