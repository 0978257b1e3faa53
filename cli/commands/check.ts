/**
 * `deltadisk check <disk>`: exit codes after qemu-img check — 0 clean, 2 corrupt,
 * 3 leaks only, 1 the check could not run.
 */
import type { Command } from 'commander';
import { Disk } from '../../lib/index.js';
import type { CheckReport } from '../../lib/chain/check.js';
import { handler, type Context } from '../context.js';
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
  program
    .command('check')
    .description('check a disk for damage: 0 clean, 2 corrupt, 3 leaks only, 1 could not run')
    .argument('<disk>', 'descriptor path')
    .option('--read-data', 'also verify the checksum of every stored block')
    .option('-r, --repair', 'fix what is safe to fix: leaks, stale headers, unfinished merges, a lost descriptor')
    .action(handler((ctx, disk: string, o: { readData?: boolean; repair?: boolean }) => checkDiskCommand(ctx, disk, o)));
}

