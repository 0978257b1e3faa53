import type { Command } from 'commander';
import { DeltaDiskError, type SnapshotInfo } from '../../lib/index.js';
import { confirm } from '../confirm.js';
import { handler, withDisk } from '../context.js';
import { listFromServer, onDiskOrServer } from '../served-disk.js';

interface DestructiveOptions {
  dryRun?: boolean;
}

function need(name: string | undefined, verb: string): string {
  if (name === undefined) throw new DeltaDiskError('INVALID_ARGUMENT', `snapshot ${verb} needs a snapshot name`);
  return name;
}

function printTree(lines: (s: string) => void, list: readonly SnapshotInfo[]): void {
  const children = new Map<string | null, SnapshotInfo[]>();
  for (const s of list) children.set(s.parent, [...(children.get(s.parent) ?? []), s]);
  const walk = (parent: string | null, indent: string): void => {
    for (const s of children.get(parent) ?? []) {
      lines(`${indent}${s.current ? '* ' : '  '}${s.name}  ${s.created}${s.bookmark ? '  (bookmark)' : ''}${s.description ? `  ${s.description}` : ''}`);
      walk(s.id, `${indent}    `);
    }
  };
  walk(null, '');
}

export function registerSnapshot(program: Command): void {
  const snap = program.command('snapshot').description('create, list, revert to and delete snapshots of a disk');

  snap
    .command('create')
    .description('take a snapshot of the current state (O(1))')
    .argument('<disk>', 'descriptor path')
    .argument('<name>', 'snapshot name')
    .option('-d, --description <text>', 'description', '')
    .action(
      handler(async (ctx, disk: string, name: string, o: { description: string }) => {
        // While `deltadisk serve` holds the disk, the server takes the snapshot between NBD requests.
        const { info, freezeMs } = await onDiskOrServer<{ info: SnapshotInfo; freezeMs: number | undefined }>(
          ctx,
          disk,
          async (x) => ({ info: await x.snapshot(name, o.description), freezeMs: undefined }),
          async (c) => {
            const live = await c.snapshot(name, o.description);
            return { info: live.snapshot, freezeMs: live.freezeMs };
          },
        );
        ctx.out.result(freezeMs === undefined ? info : { ...info, freezeMs });
        ctx.out.line(`created snapshot ${info.name} (${info.id})${freezeMs === undefined ? '' : `; writes held for ${freezeMs.toFixed(1)} ms`}`);
      }),
    );

  snap
    .command('list')
    .description('list the snapshot tree (* marks the one the current state descends from)')
    .argument('<disk>', 'descriptor path')
    .action(
      handler(async (ctx, disk: string) => {
        const list = (await listFromServer(disk)) ?? (await withDisk(await ctx.openDisk(disk, true), async (x) => x.snapshots()));
        ctx.out.result(list);
        if (list.length === 0) ctx.out.line('no snapshots');
        else printTree((s) => ctx.out.line(s), list);
      }),
    );

  snap
    .command('revert')
    .description('make the current state that of a snapshot; the current state is discarded unless kept')
    .argument('<disk>', 'descriptor path')
    .argument('<name>', 'snapshot name')
    .option('--keep-current-as <name>', 'first keep the current state as a snapshot with this name')
    .option('-n, --dry-run', 'say what would happen, change nothing')
    .action(
      handler(async (ctx, disk: string, name: string | undefined, o: DestructiveOptions & { keepCurrentAs?: string }) => {
        const target = need(name, 'revert');
        const d = await ctx.openDisk(disk, o.dryRun === true);
        await withDisk(d, async (x) => {
          if (!x.snapshots().some((s) => s.name === target)) {
            throw new DeltaDiskError('SNAPSHOT_NOT_FOUND', `no snapshot named ${JSON.stringify(target)}`);
          }
          const what = `revert ${d.path} to snapshot ${target}${o.keepCurrentAs ? `, keeping the current state as ${o.keepCurrentAs}` : ', discarding the current state'}`;
          if (o.dryRun) {
            ctx.out.result({ dry_run: true, action: 'revert', snapshot: target, keepCurrentAs: o.keepCurrentAs ?? null });
            ctx.out.line(`would ${what}`);
            return;
          }
          if (o.keepCurrentAs === undefined) await confirm(`${what[0]!.toUpperCase()}${what.slice(1)}?`, ctx.globals.yes);
          await x.revert(target, o.keepCurrentAs === undefined ? {} : { keepCurrentAs: o.keepCurrentAs });
          ctx.out.result({ action: 'revert', snapshot: target, keepCurrentAs: o.keepCurrentAs ?? null });
          ctx.out.line(`reverted to ${target}`);
        });
      }),
    );

  snap
    .command('delete')
    .description('delete a snapshot; its layer is merged away when nothing else needs it')
    .argument('<disk>', 'descriptor path')
    .argument('<name>', 'snapshot name')
    .option('-n, --dry-run', 'say what would happen, change nothing')
    .action(
      handler(async (ctx, disk: string, name: string | undefined, o: DestructiveOptions) => {
        const target = need(name, 'delete');
        // The same steps directly or, while `deltadisk serve` holds the disk, through its control channel.
        const run = async (path: string, list: readonly SnapshotInfo[], remove: () => Promise<void>): Promise<void> => {
          if (!list.some((s) => s.name === target)) {
            throw new DeltaDiskError('SNAPSHOT_NOT_FOUND', `no snapshot named ${JSON.stringify(target)}`);
          }
          if (o.dryRun) {
            ctx.out.result({ dry_run: true, action: 'delete', snapshot: target });
            ctx.out.line(`would delete snapshot ${target} of ${path}`);
            return;
          }
          await confirm(`Delete snapshot ${target} of ${path}?`, ctx.globals.yes);
          await remove();
          ctx.out.result({ action: 'delete', snapshot: target });
          ctx.out.line(`deleted snapshot ${target}`);
        };
        if (o.dryRun) {
          const d = await ctx.openDisk(disk, true);
          await withDisk(d, (x) => run(d.path, x.snapshots(), async () => undefined));
          return;
        }
        await onDiskOrServer(
          ctx,
          disk,
          (x) => run(x.path, x.snapshots(), () => x.deleteSnapshot(target)),
          async (c) => run(c.hello.disk, await c.list(), () => c.deleteSnapshot(target)),
        );
      }),
    );
}
