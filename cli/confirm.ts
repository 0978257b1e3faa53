/**
 * Confirmation before destructive commands: a y/N question on a terminal, `--yes`
 * to skip it, and a refusal (exit 2) when there is no terminal to ask, so a script
 * never hangs waiting on stdin and never destroys data by accident.
 */
import readline from 'node:readline/promises';
import { ExitCode } from './exit-codes.js';

export class NotConfirmed extends Error {
  readonly exitCode = ExitCode.USAGE;
}

export async function confirm(question: string, yes: boolean): Promise<void> {
  if (yes) return;
  if (!process.stdin.isTTY || !process.stderr.isTTY) {
    throw new NotConfirmed(`${question} Refusing without a terminal to ask; pass --yes to confirm`);
  }
  const rl = readline.createInterface({ input: process.stdin, output: process.stderr });
  try {
    const answer = await rl.question(`${question} [y/N] `);
    if (!/^y(es)?$/i.test(answer.trim())) throw new NotConfirmed('not confirmed');
  } finally {
    rl.close();
  }
}
