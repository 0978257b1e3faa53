/**
 * The exit codes are a contract: docs/CLI.md's table is cli/exit-codes.ts, and each
 * error code's "Exit N." in docs/ERRORS.md is what exitCodeFor maps it to.
 */
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { CheckExit, ExitCode, exitCodeFor } from '../../cli/exit-codes.js';
import { ERROR_CODES } from '../../lib/errors.js';

const docs = path.resolve(import.meta.dirname, '../../docs');
const cliDoc = fs.readFileSync(path.join(docs, 'CLI.md'), 'utf8');
const errorsDoc = fs.readFileSync(path.join(docs, 'ERRORS.md'), 'utf8');

function exitTable(): Map<number, string> {
  const section = cliDoc.split(/^## Exit codes$/m)[1]!.split(/^## /m)[0]!;
  const rows = [...section.matchAll(/^\| (\d+) \| (.+?) \|$/gm)];
  return new Map(rows.map((m) => [Number(m[1]), m[2]!]));
}

describe('docs/CLI.md exit codes', () => {
  it('list exactly the codes of cli/exit-codes.ts', () => {
    const table = exitTable();
    expect([...table.keys()].sort((a, b) => a - b)).toEqual([...new Set(Object.values(ExitCode))].sort((a, b) => a - b));
  });

  it('describe each code as the constant does', () => {
    const table = exitTable();
    const words: Record<keyof typeof ExitCode, RegExp> = {
      OK: /success/,
      FAILURE: /failure/,
      USAGE: /usage/,
      WARNINGS: /warning/,
      NOT_FOUND: /not found/,
      LOCKED: /locked/,
      CORRUPT: /damaged|corrupt/,
      NO_SPACE: /space/,
      INTERRUPTED: /interrupted/,
      BROKEN_PIPE: /closed|pipe/,
    };
    for (const [name, re] of Object.entries(words)) expect(table.get(ExitCode[name as keyof typeof ExitCode]), name).toMatch(re);
  });

  it('state the check convention of qemu-img that CheckExit implements', () => {
    expect(cliDoc).toMatch(/0 clean, 1 the check could not run, 2 corruption found, 3 only\s+leaks found/);
    expect(CheckExit).toEqual({ CLEAN: 0, FAILED: 1, CORRUPT: 2, LEAKS: 3 });
  });
});

describe('docs/ERRORS.md exit codes', () => {
  it('give for every error code the exit code the CLI uses', () => {
    for (const code of ERROR_CODES) {
      const section = errorsDoc.split(new RegExp(`^## ${code}$`, 'm'))[1]!.split(/^## /m)[0]!;
      const m = /Exit (\d+)\./.exec(section);
      expect(m, code).not.toBeNull();
      expect(exitCodeFor(code), code).toBe(Number(m![1]));
    }
  });
});
