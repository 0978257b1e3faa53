/**
 * `deltadisk vm backup <vm-dir> --repo <repo>` and `deltadisk vm restore <backup>
 * --repo <repo> --target <dir>`: a VM directory into a repository at one captured
 * instant (quiesced by hooks when given), and back.
 *
 * `vm backup` exits 3 when it completed but below what was asked: hooks were given
 * and the guest is only crash-consistent (`--quiesce optional`), a thaw hook failed,
 * or something was left to clean up later.
 */
import type { Command } from 'commander';
import { backupVm, restoreVm, type VmBackupResult } from '../../lib/index.js';
import { handler, type Context } from '../context.js';
import { ExitCode } from '../exit-codes.js';
import { addHookOptions, describeOutcome, hookLogger, hookSpecFrom, type HookCliOptions } from '../hook-options.js';
import { formatBytes } from '../parse-size.js';
import { latestFilter, reportItemError, seconds, shortId, StatusReporter, withLatestFilterOptions, withRepo, withRepoOptions, type LatestFilterOptions, type RepoOptions } from '../repo-context.js';
import { withTerminationSignals } from '../signals.js';

interface VmBackupCliOptions extends RepoOptions, HookCliOptions {
  tag: string[];
  dryRun?: boolean;
  host?: string;
  compression: boolean;
  logs: boolean;
  acceptProblems?: boolean;
}

interface VmRestoreCliOptions extends RepoOptions, LatestFilterOptions {
  vm?: string;
  target: string;
  disk: string[];
  file: string[];
  verify?: boolean;
  overwrite?: boolean;
  flatten?: boolean;
}

const repeatable = (v: string, acc: string[]): string[] => [...acc, v];

function report(ctx: Context, r: VmBackupResult): number {
  const s = r.summary;
  const vm = r.vm;
  ctx.out.jsonLine({
    message_type: 'summary',
    dry_run: r.dryRun,
    backup_id: r.dryRun ? null : r.id,
    vm: vm.name ?? vm.vmx,
    consistency: vm.consistency,
    freeze_window_ms: vm.freezeWindowMs,
    copied_while_frozen: vm.copiedWhileFrozen,
    hooks: vm.quiesce.hooks.map((h) => ({ hook: h.hook, phase: h.phase, ok: h.ok, exit_code: h.exitCode, timed_out: h.timedOut, duration_ms: h.durationMs })),
    disks: vm.disks.map((d) => ({ node: d.node, file: d.fileName, format: d.format })),
    files: s.files,
    chains: s.chains,
    total_bytes_processed: s.bytes,
    bytes_read: s.bytesRead,
    data_added: s.bytesNew,
    data_added_packed: s.bytesStored,
    deleted_capture_snapshots: r.deletedSnapshots,
    warnings: [...vm.warnings, ...r.warnings.map((w) => `${w.path}: ${w.message}`)],
    total_duration: s.durationMs / 1000,
  });
  const chainCount = vm.disks.filter((d) => d.format === 'chain').length;
  ctx.out.line(
    `captured ${vm.name ?? vm.vmx} at ${vm.capturedAt}: ${vm.consistency}, freeze window ${vm.freezeWindowMs.toFixed(1)} ms` +
      ` (${chainCount} chain disk${chainCount === 1 ? '' : 's'} snapshotted${vm.copiedWhileFrozen ? ', files copied while frozen' : ''})`,
  );
  for (const h of vm.quiesce.hooks) ctx.out.line(`  hook ${describeOutcome(h)}`);
  ctx.out.line(
    `${r.dryRun ? 'dry run, nothing saved:' : `backup ${shortId(r.id)} saved:`} ${vm.disks.length} disk${vm.disks.length === 1 ? '' : 's'}, ${s.files} file${s.files === 1 ? '' : 's'}; ` +
      `${formatBytes(s.bytes)} processed, ${formatBytes(s.bytesRead)} read, ${formatBytes(s.bytesNew)} new (${formatBytes(s.bytesStored)} stored) in ${seconds(s.durationMs)}`,
  );
  for (const w of vm.warnings) ctx.out.warn(w);
  const degraded = (vm.quiesce.hooks.length > 0 && !vm.quiesce.quiesced) || vm.quiesce.thawFailed || r.warnings.length > 0;
  return degraded ? ExitCode.WARNINGS : ExitCode.OK;
}

async function runBackup(ctx: Context, dir: string, o: VmBackupCliOptions): Promise<number> {
  const status = new StatusReporter(ctx, o.dryRun ? 'vm backup (dry run)' : 'vm backup');
  const result = await withRepo(o, 'shared', 'vm backup', (repo) =>
    withTerminationSignals(ctx.out, async (signal) => {
      try {
        return await backupVm(repo, dir, {
          tags: o.tag,
          dryRun: o.dryRun === true,
          compress: o.compression,
          allowPaths: ctx.allowPaths,
          hooks: hookSpecFrom(o),
          includeLogs: o.logs,
          acceptProblems: o.acceptProblems === true,
          signal,
          onLog: hookLogger(ctx.out),
          ...(o.host === undefined ? {} : { host: o.host }),
          onProgress: (p) => status.update(p.bytesDone, p.bytesTotal, { bytes_read: p.bytesRead, bytes_new: p.bytesNew, current_file: p.path }),
          onWarning: (w) => reportItemError(ctx, 'vm backup', w.path, w.message, w.code),
        });
      } finally {
        status.stop();
      }
    }),
  );
  return report(ctx, result);
}

async function runRestore(ctx: Context, spec: string, o: VmRestoreCliOptions): Promise<number> {
  const status = new StatusReporter(ctx, 'vm restore');
  const r = await withRepo(o, 'shared', 'vm restore', async (repo) => {
    // `latest` is the newest VM backup (of the VM named by --vm), never a backup of plain files.
    const id = await repo.resolveBackup(spec, { ...latestFilter(o), vm: o.vm ?? true });
    try {
      return await restoreVm(repo, id, {
        target: o.target,
        disks: o.disk,
        files: o.file,
        verify: o.verify === true,
        overwrite: o.overwrite === true,
        flatten: o.flatten === true,
        onProgress: (p) => status.update(p.bytesDone, p.bytesTotal, { current_file: p.path }),
        onWarning: (w) => reportItemError(ctx, 'vm restore', w.path, w.message, w.code),
      });
    } finally {
      status.stop();
    }
  });
  const s = r.summary;
  ctx.out.jsonLine({
    message_type: 'summary',
    backup_id: r.id,
    target: r.target,
    vm: r.vm.name ?? r.vm.vmx,
    consistency: r.vm.consistency,
    captured_at: r.vm.capturedAt,
    restored: r.include,
    files: s.files,
    chains: s.chains,
    total_bytes: s.bytes,
    verified: s.verified,
    warnings: s.warnings,
    total_duration: s.durationMs / 1000,
  });
  const what = r.include === null ? 'the VM' : r.include.join(', ');
  ctx.out.line(
    `restored ${what} of ${r.vm.name ?? r.vm.vmx} (backup ${shortId(r.id)}, ${r.vm.consistency}, captured ${r.vm.capturedAt}) to ${r.target}: ` +
      `${s.files} files, ${s.chains} disks, ${formatBytes(s.bytes)} in ${seconds(s.durationMs)}${s.verified ? ', verified' : ''}`,
  );
  if (r.vm.outside.length > 0) ctx.out.info(`files that lived outside the VM directory were restored under new names: ${r.vm.outside.map((x) => `${x.entry} (was ${x.path})`).join(', ')}`);
  return s.warnings > 0 ? ExitCode.WARNINGS : ExitCode.OK;
}

/** Adds `backup` and `restore` to the `vm` command group. */
export function registerVmBackup(vm: Command): void {
  addHookOptions(
    withRepoOptions(
      vm
        .command('backup')
        .description('back up a VM directory at one captured instant: freeze (hooks) → capture → thaw → copy')
        .argument('<vm-dir>', 'the VM directory (or its .vmx file)'),
    ),
  )
    .option('--tag <tag>', 'tag the backup (repeatable)', repeatable, [] as string[])
    .option('-n, --dry-run', 'capture and read everything, report what would be added, save nothing')
    .option('--host <name>', 'host name recorded in the backup (default: this host)')
    .option('--no-compression', 'store chunks uncompressed')
    .option('--no-logs', 'leave vmware*.log files out')
    .option('--accept-problems', 'back up even when `vm inspect` reports errors (a missing extent, a CID mismatch …)')
    .addHelpText(
      'after',
      '\nExamples:\n  deltadisk vm backup /vms/web --repo /backups/repo --hooks-dir /etc/deltadisk/hooks\n' +
        '  deltadisk vm backup /vms/web --repo /backups/repo --pre-freeze "fsfreeze -f /mnt" --post-thaw "fsfreeze -u /mnt" --quiesce optional',
    )
    .action(handler((ctx, dir: string, o: VmBackupCliOptions) => runBackup(ctx, dir, o)));

  withLatestFilterOptions(
    withRepoOptions(
      vm
        .command('restore')
        .description('restore a VM backup into a directory: the whole VM, some disks, or single files')
        .argument('<backup>', 'backup id, unique id prefix, or "latest"'),
    ),
  )
    .option('--vm <name>', 'with "latest": the newest backup of the VM of this name (its displayName)')
    .requiredOption('-t, --target <dir>', 'directory to restore into (created if missing; it becomes the VM directory)')
    .option('--disk <name>', 'restore only this disk: device node (scsi0:0) or file name (repeatable)', repeatable, [] as string[])
    .option('--file <name>', 'restore only this file of the VM directory (repeatable)', repeatable, [] as string[])
    .option('--flatten', 'restore chain disks as one raw image (<name>.raw) each')
    .option('--verify', 'read the restored data back and compare it with the backup')
    .option('--overwrite', 'replace existing files (never directories or disks)')
    .action(handler((ctx, spec: string, o: VmRestoreCliOptions) => runRestore(ctx, spec, o)));
}
