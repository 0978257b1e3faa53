/**
 * What every command handler gets: the global options, an Output, and helpers to
 * open disks the way the user asked (paths they allowed explicitly, read-only or not).
 */
import fs from 'node:fs';
import path from 'node:path';
import type { Command } from 'commander';
import { DeltaDiskError, Disk } from '../lib/index.js';
import { Output, type GlobalOptions } from './output.js';

export interface Context {
  readonly out: Output;
  readonly globals: GlobalOptions;
  /** Paths the user trusts outside a disk's directory: --allow-path and DELTADISK_ALLOW_PATHS. */
  readonly allowPaths: readonly string[];
  /** The command being run (where an option's value came from: `getOptionValueSource`). */
  readonly command: Command;
  openDisk(descriptor: string, readOnly: boolean): Promise<Disk>;
}

function globalsOf(cmd: Command): GlobalOptions {
  const o = cmd.optsWithGlobals();
  return {
    json: o.json === true,
    quiet: o.quiet === true,
    progress: typeof o.progress === 'boolean' && process.argv.some((a) => a === '--progress' || a === '--no-progress') ? o.progress : undefined,
    yes: o.yes === true,
    allowPath: Array.isArray(o.allowPath) ? (o.allowPath as string[]) : [],
  };
}

export function contextFor(cmd: Command): Context {
  const globals = globalsOf(cmd);
  const fromEnv = (process.env.DELTADISK_ALLOW_PATHS ?? '').split(path.delimiter).filter((p) => p.length > 0);
  const allowPaths = [...globals.allowPath, ...fromEnv].map((p) => path.resolve(p));
  return {
    out: new Output(globals),
    globals,
    allowPaths,
    command: cmd,
    openDisk: (descriptor, readOnly) => Disk.open(descriptor, { readOnly, allowPaths }),
  };
}

/**
 * Wraps a command handler: builds the context from the Command commander passes
 * last, runs the handler, turns errors into messages and exit codes.
 */
export function handler<A extends unknown[]>(fn: (ctx: Context, ...args: A) => Promise<number | void>) {
  return async (...params: unknown[]): Promise<void> => {
    const cmd = params[params.length - 1] as Command;
    const ctx = contextFor(cmd);
    try {
      const code = await fn(ctx, ...(params.slice(0, -1) as A));
      process.exitCode = code ?? 0;
    } catch (err) {
      process.exitCode = ctx.out.error(err);
    }
  };
}

/**
 * Refuses an output path that is one of `disk`'s own files (its descriptor, a delta,
 * its base): `export -o disk-000001.delta --force` must not destroy the disk.
 */
export function assertNotOwnFile(disk: Disk, output: string): void {
  const real = (p: string): string => {
    try {
      return fs.realpathSync(p);
    } catch {
      try {
        return path.join(fs.realpathSync(path.dirname(p)), path.basename(p));
      } catch {
        return path.resolve(p);
      }
    }
  };
  const target = real(path.resolve(output));
  if (disk.files().some((f) => real(f) === target)) {
    throw new DeltaDiskError('INVALID_ARGUMENT', `${output} is one of the disk's own files; choose another output`, { path: target });
  }
}

/**
 * Refuses an output file that exists, naming the option that replaces it (the
 * library's own refusal, kept for a file appearing meanwhile, speaks of `overwrite`).
 */
export function assertNoOutput(output: string): void {
  let exists = true;
  try {
    fs.lstatSync(output);
  } catch {
    exists = false;
  }
  if (exists) throw new DeltaDiskError('ALREADY_EXISTS', `${output} exists; pass --force to replace it`, { path: path.resolve(output) });
}

/** Runs `fn` with `disk` and always closes it; a close error does not hide the first one. */
export async function withDisk<T>(disk: Disk, fn: (disk: Disk) => Promise<T>): Promise<T> {
  let result: T;
  try {
    result = await fn(disk);
  } catch (err) {
    await disk.close().catch(() => undefined);
    throw err;
  }
  await disk.close();
  return result;
}
