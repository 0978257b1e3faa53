/**
 * `deltadisk serve`: the disk as a network block device, until SIGINT or SIGTERM.
 *
 * The current state is exported read-write (or read-only) under --export-name
 * and as the default export; every snapshot read-only under its own name. While
 * it runs, `deltadisk snapshot create|delete|list` on the same disk go through the
 * control socket `<disk>.ctl`. On the first SIGINT/SIGTERM the server stops
 * accepting, answers the requests it has read, flushes and closes the disk; a
 * second signal exits at once (writes not flushed by a client may then be lost).
 */
import type { Command } from 'commander';
import { DeltaDiskError, serveDisk, type ListenAddress } from '../../lib/index.js';
import { handler } from '../context.js';
import { ExitCode } from '../exit-codes.js';
import { parseCount } from '../parse-size.js';

interface ServeOptions {
  listen?: string;
  socket?: string;
  readOnly?: boolean;
  exportName?: string;
  maxConnections?: number;
}

export const DEFAULT_LISTEN = '127.0.0.1:10809';

/** "host:port", "[v6]:port" or a bare port (on 127.0.0.1). */
export function parseListen(text: string): ListenAddress {
  const m = /^(?:\[([^\]]+)\]|([^:[\]]*)):(\d+)$/.exec(text) ?? /^()()(\d+)$/.exec(text);
  const port = m === null ? Number.NaN : Number(m[3]);
  if (m === null || !Number.isSafeInteger(port) || port > 65535) {
    throw new DeltaDiskError('INVALID_ARGUMENT', `--listen ${JSON.stringify(text)}: give host:port, [ipv6]:port or a port`);
  }
  const host = m[1] ?? m[2] ?? '';
  return { host: host === '' ? '127.0.0.1' : host, port };
}

function waitForSignal(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    const on = (sig: NodeJS.Signals): void => {
      process.off('SIGINT', on);
      process.off('SIGTERM', on);
      resolve(sig);
    };
    process.on('SIGINT', on);
    process.on('SIGTERM', on);
  });
}

export function registerServe(program: Command): void {
  program
    .command('serve')
    .description('serve a disk over NBD (current state read-write, snapshots read-only) until SIGINT/SIGTERM')
    .argument('<disk>', 'descriptor path')
    .option('--listen <host:port>', `TCP address to listen on (default ${DEFAULT_LISTEN})`)
    .option('--socket <path>', 'listen on a Unix socket instead of TCP')
    .option('--read-only', 'export the current state read-only (no control channel)')
    .option('--export-name <name>', 'name of the current state\'s export (it is also the default export "")')
    .option('--max-connections <n>', 'clients served at once (default 64)', parseCount)
    .addHelpText(
      'after',
      '\nExamples:\n  deltadisk serve vm/disk.chain\n  qemu-img info nbd://127.0.0.1:10809/\n' +
        '  deltadisk serve vm/disk.chain --socket /run/vm/disk.sock --export-name disk\n' +
        '  deltadisk snapshot create vm/disk.chain nightly     # while served: goes through vm/disk.chain.ctl',
    )
    .action(
      handler(async (ctx, diskPath: string, o: ServeOptions) => {
        if (o.listen !== undefined && o.socket !== undefined) throw new DeltaDiskError('INVALID_ARGUMENT', 'give --listen or --socket, not both');
        const listen: ListenAddress = o.socket !== undefined ? { path: o.socket } : parseListen(o.listen ?? DEFAULT_LISTEN);
        const disk = await ctx.openDisk(diskPath, o.readOnly === true);
        let served;
        try {
          served = await serveDisk(disk, {
            listen,
            readOnly: o.readOnly === true,
            ...(o.exportName === undefined ? {} : { exportName: o.exportName }),
            ...(o.maxConnections === undefined ? {} : { maxConnections: o.maxConnections }),
            log: (m) => ctx.out.info(`deltadisk serve: ${m}`),
          });
        } catch (err) {
          await disk.close().catch(() => undefined);
          throw err;
        }
        const signal = waitForSignal();
        const uri = served.server.uri();
        const exports = served.exports.list().map((e) => ({ name: e.name, readOnly: e.readOnly, snapshot: e.snapshot ?? null }));
        ctx.out.jsonLine({ event: 'listening', uri, address: served.server.address, control: served.control?.path ?? null, exports });
        ctx.out.line(`serving ${disk.path} at ${uri}${served.exports.readOnly ? ' (read-only)' : ''}`);
        if (served.control !== undefined) ctx.out.line(`control socket ${served.control.path}`);
        const sig = await signal;
        ctx.out.info(`deltadisk serve: ${sig}: finishing requests in flight, flushing`);
        const force = (): void => {
          process.stderr.write('deltadisk serve: second signal, exiting without a clean close\n');
          process.exit(ExitCode.INTERRUPTED);
        };
        process.once('SIGINT', force);
        process.once('SIGTERM', force);
        try {
          await served.close();
        } finally {
          await disk.close();
          process.off('SIGINT', force);
          process.off('SIGTERM', force);
        }
        ctx.out.jsonLine({ event: 'stopped', signal: sig });
        ctx.out.line('stopped');
        return ExitCode.OK;
      }),
    );
}
