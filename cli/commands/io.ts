/**
 * `deltadisk io`: qemu-io style commands applied in order in one process.
 *
 *   write -P <byte> <offset> <length>   write a pattern byte
 *   write -z <offset> <length>          write zeros
 *   write -s <file> <offset> <length>   write the first <length> bytes of a file
 *   read [-P <byte>] <offset> <length>  read (and verify a pattern)
 *   discard <offset> <length>
 *   flush
 *
 * One line per completed command on stdout, as qemu-io prints it ("wrote 512/512
 * bytes at offset 0"); a failed pattern check stops and exits 1.
 */
import fs from 'node:fs';
import { InvalidArgumentError, type Command } from 'commander';
import { DeltaDiskError, type Disk } from '../../lib/index.js';
import { fromSystemError } from '../../lib/errors.js';
import type { Context } from '../context.js';
import { handler, withDisk } from '../context.js';
import { ExitCode } from '../exit-codes.js';
import { parseSize } from '../parse-size.js';

type IoOp =
  | { op: 'write'; offset: number; length: number; pattern: number }
  | { op: 'zero'; offset: number; length: number }
  | { op: 'write-file'; offset: number; length: number; file: string }
  | { op: 'read'; offset: number; length: number; pattern: number | undefined }
  | { op: 'discard'; offset: number; length: number }
  | { op: 'flush' };

function usage(message: string): never {
  throw new DeltaDiskError('INVALID_ARGUMENT', `io: ${message}`);
}

function pattern(text: string | undefined): number {
  if (text === undefined) usage('-P needs a byte value');
  const n = /^0x[0-9a-f]+$/i.test(text) ? Number.parseInt(text, 16) : /^\d+$/.test(text) ? Number(text) : Number.NaN;
  if (!Number.isInteger(n) || n < 0 || n > 255) usage(`pattern ${JSON.stringify(text)} is not a byte (0-255 or 0x00-0xff)`);
  return n;
}

function size(text: string | undefined, what: string): number {
  if (text === undefined) usage(`missing ${what}`);
  try {
    return parseSize(text);
  } catch (err) {
    usage((err as InvalidArgumentError).message);
  }
}

/** Parses one -c command string. */
export function parseIoCommand(text: string): IoOp {
  const words = text.trim().split(/\s+/).filter((w) => w.length > 0);
  const verb = words.shift();
  const flags = new Map<string, string | undefined>();
  const positional: string[] = [];
  while (words.length > 0) {
    const w = words.shift()!;
    if (w === '-P' || w === '-s') flags.set(w, words.shift());
    else if (w === '-z') flags.set(w, undefined);
    else if (w.startsWith('-') && !/^-?\d/.test(w)) usage(`unknown flag ${w} in ${JSON.stringify(text)}`);
    else positional.push(w);
  }
  const range = (): { offset: number; length: number } => {
    if (positional.length !== 2) usage(`${verb} takes <offset> <length> in ${JSON.stringify(text)}`);
    return { offset: size(positional[0], 'offset'), length: size(positional[1], 'length') };
  };
  switch (verb) {
    case 'write': {
      const r = range();
      if (flags.has('-z')) return { op: 'zero', ...r };
      if (flags.has('-s')) return { op: 'write-file', ...r, file: flags.get('-s') ?? usage('-s needs a file') };
      return { op: 'write', ...r, pattern: flags.has('-P') ? pattern(flags.get('-P')) : 0xcd };
    }
    case 'read':
      return { op: 'read', ...range(), pattern: flags.has('-P') ? pattern(flags.get('-P')) : undefined };
    case 'discard':
      return { op: 'discard', ...range() };
    case 'flush':
      if (positional.length > 0) usage('flush takes no arguments');
      return { op: 'flush' };
    default:
      usage(`unknown command ${JSON.stringify(verb ?? '')} (write, read, discard, flush)`);
  }
}

async function runOp(ctx: Context, disk: Disk, op: IoOp): Promise<boolean> {
  const out = ctx.out;
  switch (op.op) {
    case 'write':
      await disk.write(op.offset, Buffer.alloc(op.length, op.pattern));
      out.line(`wrote ${op.length}/${op.length} bytes at offset ${op.offset}`);
      break;
    case 'zero':
      await disk.writeZeroes(op.offset, op.length);
      out.line(`wrote ${op.length}/${op.length} bytes at offset ${op.offset}`);
      break;
    case 'write-file': {
      const data = Buffer.alloc(op.length);
      let fd: number;
      try {
        fd = fs.openSync(op.file, 'r');
      } catch (err) {
        throw fromSystemError(err, op.file, 'io: write -s cannot open its source');
      }
      try {
        let n = 0;
        while (n < op.length) {
          const got = fs.readSync(fd, data, n, op.length - n, n);
          if (got === 0) break;
          n += got;
        }
        // The user's source file is an argument, not a structure of ours: a usage error.
        if (n < op.length) throw new DeltaDiskError('INVALID_ARGUMENT', `io: ${op.file} has only ${n} bytes, ${op.length} wanted`, { path: op.file });
      } catch (err) {
        throw fromSystemError(err, op.file, 'io: reading the source of write -s failed');
      } finally {
        fs.closeSync(fd);
      }
      await disk.write(op.offset, data);
      out.line(`wrote ${op.length}/${op.length} bytes at offset ${op.offset}`);
      break;
    }
    case 'read': {
      const data = await disk.read(op.offset, op.length);
      if (op.pattern !== undefined) {
        const bad = data.findIndex((b) => b !== op.pattern);
        if (bad >= 0) {
          out.warn(`Pattern verification failed at offset ${op.offset + bad}, ${op.length} bytes`);
          out.jsonLine({ op: 'read', offset: op.offset, length: op.length, verified: false, mismatchAt: op.offset + bad });
          return false;
        }
      }
      out.line(`read ${op.length}/${op.length} bytes at offset ${op.offset}`);
      break;
    }
    case 'discard':
      await disk.discard(op.offset, op.length);
      out.line(`discard ${op.length}/${op.length} bytes at offset ${op.offset}`);
      break;
    case 'flush':
      await disk.flush();
      out.line('flushed');
      break;
  }
  out.jsonLine({ ...op, ...(op.op === 'read' && op.pattern !== undefined ? { verified: true } : {}) });
  return true;
}

export function registerIo(program: Command): void {
  program
    .command('io')
    .description('apply qemu-io style commands to a disk, in order, in one process')
    .argument('<disk>', 'descriptor path')
    .requiredOption('-c, --command <command>', 'a command: write -P|-z|-s …, read [-P] …, discard …, flush (repeatable)', (v: string, acc: string[]) => [...acc, v], [] as string[])
    .addHelpText('after', '\nExample:\n  deltadisk io vm/disk.chain -c "write -P 0xab 0 64k" -c flush -c "read -P 0xab 0 64k"')
    .action(
      handler(async (ctx, disk: string, o: { command: string[] }) => {
        // commander counts the [] default as "given", so requiredOption alone lets `io <disk>` through.
        if (o.command.length === 0) usage('give at least one -c "<command>"');
        const ops = o.command.map(parseIoCommand);
        const readOnly = ops.every((op) => op.op === 'read');
        const d = await ctx.openDisk(disk, readOnly);
        return withDisk(d, async (x) => {
          for (const op of ops) if (!(await runOp(ctx, x, op))) return ExitCode.FAILURE;
          return ExitCode.OK;
        });
      }),
    );
}
