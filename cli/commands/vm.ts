/**
 * `deltadisk vm …`: VM directories. `inspect` reads (safe on a running VM);
 * `snapshot create|list|revert|delete` manage VM-level snapshots of chain disks.
 * Problems found by `inspect` are output, not failures: it exits non-zero only when
 * it cannot run. `vm backup` / `vm restore` (vm-backup.ts) work with a repository.
 */
import type { Command } from 'commander';
import { createVmSnapshot, deleteVmSnapshot, findVmSnapshot, inspectVm, revertVmSnapshot, type VmSnapshotNode } from '../../lib/index.js';
import { confirm } from '../confirm.js';
import { handler } from '../context.js';
import { ExitCode } from '../exit-codes.js';
import { addHookOptions, describeOutcome, hookLogger, hookSpecFrom, type HookCliOptions } from '../hook-options.js';
import { withTerminationSignals } from '../signals.js';
import { renderInventory, renderSnapshotTree } from '../vm-render.js';
import { registerVmBackup } from './vm-backup.js';

interface InspectOptions {
  logs: boolean;
  includeUnknown?: boolean;
}

export function registerVm(program: Command): void {
  const vm = program.command('vm').description('VM directories: inspect them, snapshot their chain disks together');

  vm.command('inspect')
    .description('show the file set, disks with their chains, snapshot tree, skipped files and problems')
    .argument('<vm-dir>', 'the VM directory (or its .vmx file)')
    .option('--no-logs', 'leave vmware*.log files out of the file set')
    .option('--include-unknown', 'put files nobody names into the file set instead of only reporting them')
    .action(
      handler(async (ctx, dir: string, o: InspectOptions) => {
        const inv = await inspectVm(dir, { allowPaths: ctx.allowPaths, includeLogs: o.logs, includeUnknown: o.includeUnknown === true });
        ctx.out.result(inv);
        for (const line of renderInventory(inv)) ctx.out.line(line);
      }),
    );

  registerVmBackup(vm);

  const snap = vm.command('snapshot').description('VM-level snapshots: every chain disk at one instant, with the configuration');

  addHookOptions(
    snap
      .command('create')
      .description('snapshot every chain disk of the VM at one instant, with a copy of the configuration')
      .argument('<vm-dir>', 'the VM directory (or its .vmx file)')
      .argument('<name>', 'snapshot name (unique in the VM)')
      .option('-d, --description <text>', 'description', '')
      .option('--memory <file>', 'keep this memory-state file with the snapshot'),
  ).action(
    handler(async (ctx, dir: string, name: string, o: HookCliOptions & { description: string; memory?: string }) => {
      const r = await withTerminationSignals(ctx.out, (signal) =>
        createVmSnapshot(dir, name, {
          description: o.description,
          allowPaths: ctx.allowPaths,
          hooks: hookSpecFrom(o),
          signal,
          onLog: hookLogger(ctx.out),
          ...(o.memory === undefined ? {} : { memory: o.memory }),
        }),
      );
      ctx.out.result(r);
      for (const note of r.recovered) ctx.out.info(`recovered: ${note}`);
      for (const w of r.warnings) ctx.out.warn(w);
      ctx.out.line(`created VM snapshot ${r.name} (#${r.uid}), ${r.consistency}, freeze window ${r.freezeWindowMs.toFixed(1)} ms`);
      for (const d of r.disks) ctx.out.line(`  ${d.node}  ${d.fileName}  ${d.snapshotName}`);
      for (const h of r.hooks) ctx.out.line(`  hook ${describeOutcome(h)}`);
      const degraded = r.hooks.some((h) => !h.ok) || r.warnings.some((w) => w.startsWith('not quiesced'));
      return degraded ? ExitCode.WARNINGS : ExitCode.OK;
    }),
  );

  snap
    .command('list')
    .description('show the VM snapshot tree (* marks the one the current state descends from)')
    .argument('<vm-dir>', 'the VM directory (or its .vmx file)')
    .action(
      handler(async (ctx, dir: string) => {
        const inv = await inspectVm(dir, { allowPaths: ctx.allowPaths });
        const problems = inv.problems.filter((p) => p.code === 'SNAPSHOT_INCONSISTENT' || p.code === 'ORPHAN_SNAPSHOT' || p.code === 'NEED_CONSOLIDATE');
        ctx.out.result({ snapshots: inv.snapshots, problems });
        const tree = renderSnapshotTree(inv.snapshots);
        if (tree.length === 0) ctx.out.line('no snapshots');
        for (const line of tree) ctx.out.line(line);
        for (const p of problems) ctx.out.warn(`${p.code}: ${p.message}`);
      }),
    );

  snap
    .command('revert')
    .description('make the disks and configuration those of a snapshot; the current disk state is discarded')
    .argument('<vm-dir>', 'the VM directory (or its .vmx file)')
    .argument('<name>', 'snapshot name, or #<uid>')
    .option('--memory <file>', "write the snapshot's memory state to this new file")
    .option('-n, --dry-run', 'say what would happen, change nothing')
    .action(
      handler(async (ctx, dir: string, name: string, o: { memory?: string; dryRun?: boolean }) => {
        const inv = await inspectVm(dir, { allowPaths: ctx.allowPaths });
        const target = findByName(inv.snapshots, name);
        const what = `revert ${inv.vmx} to snapshot ${target.name} (#${target.uid}), discarding the current state of its disks`;
        if (o.dryRun === true) {
          ctx.out.result({ dry_run: true, action: 'revert', uid: target.uid, name: target.name });
          ctx.out.line(`would ${what}`);
          return;
        }
        await confirm(`${what[0]!.toUpperCase()}${what.slice(1)}?`, ctx.globals.yes);
        const r = await revertVmSnapshot(dir, `#${target.uid}`, { allowPaths: ctx.allowPaths, ...(o.memory === undefined ? {} : { memoryOut: o.memory }) });
        ctx.out.result({ action: 'revert', ...r });
        for (const note of r.recovered) ctx.out.info(`recovered: ${note}`);
        ctx.out.line(`reverted to ${target.name} (#${r.uid}): ${r.disks.join(', ')}, configuration restored`);
      }),
    );

  snap
    .command('delete')
    .description('delete a VM snapshot: its disk snapshots are merged away, its files removed')
    .argument('<vm-dir>', 'the VM directory (or its .vmx file)')
    .argument('<name>', 'snapshot name, or #<uid>')
    .option('-n, --dry-run', 'say what would happen, change nothing')
    .action(
      handler(async (ctx, dir: string, name: string, o: { dryRun?: boolean }) => {
        const inv = await inspectVm(dir, { allowPaths: ctx.allowPaths });
        const target = findByName(inv.snapshots, name);
        if (o.dryRun === true) {
          ctx.out.result({ dry_run: true, action: 'delete', uid: target.uid, name: target.name });
          ctx.out.line(`would delete VM snapshot ${target.name} (#${target.uid}) of ${inv.vmx}`);
          return;
        }
        await confirm(`Delete VM snapshot ${target.name} (#${target.uid}) of ${inv.vmx}?`, ctx.globals.yes);
        const r = await deleteVmSnapshot(dir, `#${target.uid}`, { allowPaths: ctx.allowPaths });
        ctx.out.result({ action: 'delete', ...r });
        for (const note of r.recovered) ctx.out.info(`recovered: ${note}`);
        ctx.out.line(`deleted VM snapshot ${target.name} (#${r.uid})`);
      }),
    );
}

function findByName(list: readonly VmSnapshotNode[], ref: string): VmSnapshotNode {
  return findVmSnapshot(list, ref, (x) => x.name);
}
