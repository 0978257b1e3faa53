/**
 * Running the built CLI as a real process.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import path from 'node:path';

export const CLI = path.resolve(import.meta.dirname, '../../dist/deltadisk.cjs');

export interface CliResult {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
}

export function startCli(args: readonly string[], env: Record<string, string> = {}): { child: ChildProcess; done: Promise<CliResult> } {
  const child = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const done = new Promise<CliResult>((resolve) => child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr })));
  return { child, done };
}

export function cli(args: readonly string[], env: Record<string, string> = {}): Promise<CliResult> {
  return startCli(args, env).done;
}

/** The JSON lines of a --json run's stdout. */
export function jsonLines(out: string): Record<string, unknown>[] {
  return out.split('\n').filter((l) => l.trim().startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>);
}

/** Deterministic bytes from a seed. */
export function seeded(seed: string, n: number): Buffer {
  const out = Buffer.allocUnsafe(n);
  for (let at = 0, i = 0; at < n; i++) {
    const block = createHash('sha256').update(`${seed}:${i}`).digest();
    block.copy(out, at, 0, Math.min(32, n - at));
    at += 32;
  }
  return out;
}
