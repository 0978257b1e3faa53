import type { Command } from 'commander';
import { breakWriterLock } from '../../lib/index.js';
import { handler } from '../context.js';

export function registerUnlock(program: Command): void {
  program
    .command('unlock')
    .description('remove a lock left behind by a process that is gone (refused while a live writer on this host holds it)')
    .argument('<disk>', 'descriptor path')
    .action(
      handler(async (ctx, disk: string) => {
        const removed = await breakWriterLock(disk);
        ctx.out.result({ removed: removed ?? null });
        if (removed === undefined) ctx.out.line(`${disk} was not locked`);
        else if (removed === 'garbage') ctx.out.line(`removed an unreadable lock file of ${disk}`);
        else ctx.out.line(`removed the lock of pid ${removed.pid} on ${removed.host} (${removed.purpose}, since ${removed.started})`);
      }),
    );
}
