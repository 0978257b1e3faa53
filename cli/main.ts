#!/usr/bin/env node
/**
 * The deltadisk command line. Commands live one group per file in cli/commands;
 * this file only wires them together and maps commander's own errors (unknown
 * option, missing argument) to exit code 2.
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
import { registerPrune } from './commands/prune.js';
import { registerRepo } from './commands/repo.js';
import { registerRestore } from './commands/restore.js';
import { registerSnapshot } from './commands/snapshot.js';
import { registerSnapshots } from './commands/snapshots.js';
import { registerStats } from './commands/stats.js';
import { registerUnlock } from './commands/unlock.js';
import { ExitCode } from './exit-codes.js';

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
    .showHelpAfterError('(add --help for usage)')
    .exitOverride();
  registerCreate(program);
  registerInfo(program);
  registerIo(program);
  registerSnapshot(program);
  registerExport(program);
  registerUnlock(program);
  registerRepo(program);
  registerBackup(program);
  registerSnapshots(program);
  registerRestore(program);
  registerCheck(program);
  registerForget(program);
  registerPrune(program);
  registerStats(program);
  registerDiff(program);
  registerDemo(program);
  program.commands.forEach(function override(c: Command): void {
    c.exitOverride();
    c.commands.forEach(override);
  });
  return program;
}

export async function main(argv: readonly string[]): Promise<void> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv as string[]);
  } catch (err) {
    if (err instanceof CommanderError) {
      const ok = err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || err.code === 'commander.help';
      process.exitCode = ok ? ExitCode.OK : ExitCode.USAGE;
      return;
    }
    throw err;
  }
}

await main(process.argv);
