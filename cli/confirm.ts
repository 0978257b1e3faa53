/**
 * Confirmation before destructive commands: a y/N question on a terminal, `--yes`
 * to skip it, and a refusal (exit 2) when there is no terminal to ask, so a script
 * never hangs waiting on stdin and never destroys data by accident. End of input
 * (Ctrl-D) at the question is a "no"; Ctrl-C is an interruption (exit 130).
 */
import readline from 'node:readline/promises';
import { DeltaDiskError } from '../lib/index.js';
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
    const answer = await new Promise<string>((resolve, reject) => {
      // With a listener, readline leaves Ctrl-C to us instead of rejecting like Ctrl-D.
      // Either way the answer's line was not ended: end it before the message.
      rl.once('SIGINT', () => {
        process.stderr.write('\n');
        reject(new DeltaDiskError('INTERRUPTED', 'interrupted at the question; nothing was changed'));
      });
      rl.question(`${question} [y/N] `).then(resolve, () => {
        process.stderr.write('\n');
        reject(new NotConfirmed('not confirmed'));
      });
    });
    if (!/^y(es)?$/i.test(answer.trim())) throw new NotConfirmed('not confirmed');
  } finally {
    rl.close();
  }
}
