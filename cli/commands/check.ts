/**
 * `deltadisk check <disk>` and `deltadisk check --repo <repo>`: exit codes after
 * qemu-img check — 0 clean, 2 corrupt, 3 leaks only, 1 the check could not run.
 * A disk argument picks the disk variant; without one, the repository is checked.
 */
import type { Command } from 'commander';
import { DeltaDiskError, Disk } from '../../lib/index.js';
import type { CheckReport } from '../../lib/chain/check.js';
import { handler, type Context } from '../context.js';
import { withRepoOptions } from '../repo-context.js';
import { parseSubset, runRepoCheck, type RepoCheckOptions } from './repo-check.js';
import { CheckExit } from '../exit-codes.js';
import { formatBytes } from '../parse-size.js';
import { startProgress } from '../progress.js';

function print(ctx: Context, disk: string, r: CheckReport): void {
  const o = ctx.out;
  for (const f of r.repaired) o.line(`repaired: ${f.message}`);
  for (const f of r.findings) o.line(`${f.severity === 'corrupt' ? 'ERROR' : 'Leaked'}: ${f.message}`);
  for (const n of r.notes) o.line(`note: ${n}`);
  const verified = r.blocksVerified > 0 ? `; ${r.blocksVerified} blocks (${formatBytes(r.bytesVerified)}) verified` : '';
  if (r.result === 'clean') o.line(`No errors were found on ${disk} (${r.layersChecked} layers${verified}).`);
  else if (r.result === 'leaks') o.line(`${r.findings.length} leaks found on ${disk}; no harm to data (run with --repair to fix).`);
  else o.line(`${r.findings.filter((f) => f.severity === 'corrupt').length} errors found on ${disk}.`);
  if (r.garbageBytes > 0) o.line(`${formatBytes(r.garbageBytes)} of overwritten data can be reclaimed with \`deltadisk compact\`.`);
}

export async function checkDiskCommand(ctx: Context, disk: string, o: { readData?: boolean; repair?: boolean }): Promise<number> {
  let report: CheckReport;
  let progress: ReturnType<typeof startProgress> | undefined;
  try {
    if (o.readData) {
      const d = await Disk.open(disk, { readOnly: true, allowPaths: ctx.allowPaths }).catch(() => undefined);
      const info = await d?.info();
      await d?.close();
      progress = startProgress(ctx.out, 'check', info?.storedBytes ?? 0);
    }
    report = await Disk.check(disk, {
      allowPaths: ctx.allowPaths,
      readData: o.readData === true,
      repair: o.repair === true,
      ...(progress ? { onProgress: (n: number) => progress!.add(n) } : {}),
    });
  } catch (err) {
    ctx.out.error(err);
    return CheckExit.FAILED;
  } finally {
    progress?.stop();
  }
  ctx.out.result(report);
  print(ctx, disk, report);
  return report.result === 'clean' ? CheckExit.CLEAN : report.result === 'leaks' ? CheckExit.LEAKS : CheckExit.CORRUPT;
}

export function registerCheck(program: Command): void {
  withRepoOptions(
    program
      .command('check')
      .description('check a disk, or a backup repository (--repo), for damage: 0 clean, 2 corrupt, 3 leaks only, 1 could not run'),
    false,
  )
    .argument('[disk]', 'descriptor path of a disk to check (omit with --repo)')
    .option('--read-data', 'also verify the checksum of every stored block (disk) or re-hash every chunk (repository)')
    .option('--read-data-subset <n/t>', 'repository: re-hash the chunks of part n of t (rotate n over runs)', parseSubset)
    .option('--repair', 'disk: fix what is safe to fix: leaks, stale headers, unfinished merges, a lost descriptor')
    .addHelpText('after', '\nExamples:\n  deltadisk check vm/disk.chain --read-data\n  deltadisk check --repo /backups --read-data-subset 1/7')
    .action(
      handler(async (ctx, disk: string | undefined, o: RepoCheckOptions & { repair?: boolean }) => {
        if (disk !== undefined) {
          if (o.readDataSubset !== undefined) throw new DeltaDiskError('INVALID_ARGUMENT', '--read-data-subset is for repositories; give --read-data to verify a whole disk');
          return checkDiskCommand(ctx, disk, o);
        }
        if (o.repair) throw new DeltaDiskError('INVALID_ARGUMENT', '--repair is for disks: give the disk to repair');
        if (o.repo === undefined) throw new DeltaDiskError('INVALID_ARGUMENT', 'check needs a disk, or --repo <repo>');
        return runRepoCheck(ctx, o);
      }),
    );
}

