/**
 * `deltadisk demo` (what `npm start` runs): the main job on a built-in example,
 * narrated, each step checked against what it must give.
 *
 * The story: a VM whose two disks are deltadisk chains is created and written; a
 * VM-level snapshot is taken; the VM is backed up with a quiesce hook (freeze window
 * and consistency shown); it changes a little; the second backup reads only what
 * changed; the backup is restored to a new directory and verified against the VM
 * as it was at each capture, VM snapshot included. Everything happens in a fresh temporary directory
 * (or `--dir`), kept so the files can be looked at afterwards.
 */
import { createCipheriv, createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Command } from 'commander';
import { backupVm, createVmSnapshot, Disk, inspectVm, Repository, restoreVm, revertVmSnapshot, type VmBackupResult } from '../../lib/index.js';
import { handler } from '../context.js';
import { formatBytes } from '../parse-size.js';
import { withRepo } from '../repo-context.js';

const MiB = 1024 * 1024;

/** Deterministic, incompressible bytes (so dedup and compression cannot flatter the figures): AES-CTR over zeros. */
function pattern(seed: string, n: number): Buffer {
  const key = createHash('sha256').update(seed).digest();
  const c = createCipheriv('aes-256-ctr', key, Buffer.alloc(16));
  return Buffer.concat([c.update(Buffer.alloc(n)), c.final()]);
}

function digest(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex').slice(0, 12);
}

async function diskDigest(file: string): Promise<string> {
  const d = await Disk.open(file, { readOnly: true });
  try {
    return digest(await d.read(0, d.virtualSize));
  } finally {
    await d.close();
  }
}

const VMX = (name: string): string =>
  [
    '.encoding = "UTF-8"',
    'config.version = "8"',
    'virtualHW.version = "19"',
    `displayName = "${name}"`,
    'guestOS = "debian12-64"',
    'memsize = "2048"',
    `nvram = "${name}.nvram"`,
    'scsi0.present = "TRUE"',
    'scsi0:0.present = "TRUE"',
    'scsi0:0.fileName = "system.chain"',
    'scsi0:1.present = "TRUE"',
    'scsi0:1.fileName = "data.chain"',
    '',
  ].join('\n');

const HOOK = `#!/bin/sh
# A quiesce hook: a real one would run "fsfreeze -f /data" or tell the database
# to flush and hold its writes on "freeze", and release them on "thaw".
echo "$(date +%T.%N | cut -c1-12) $1 $DELTADISK_VM_NAME (backup $DELTADISK_BACKUP_ID)" >> "$(dirname "$0")/../hooks.log"
echo "database: $1"
`;

export function registerDemo(program: Command): void {
  program
    .command('demo')
    .description('run the main job on a built-in example (a VM with chain disks: snapshot, back up, change, back up, restore, verify) and narrate it')
    .option('--dir <dir>', 'work in this (new) directory instead of a temporary one')
    .action(
      handler(async (ctx, o: { dir?: string }) => {
        const say = (s: string): void => ctx.out.line(s);
        const root = o.dir === undefined ? fs.mkdtempSync(path.join(os.tmpdir(), 'deltadisk-demo-')) : path.resolve(o.dir);
        const vmDir = path.join(root, 'vms', 'web');
        const repoDir = path.join(root, 'repo');
        const hooksDir = path.join(root, 'hooks');
        fs.mkdirSync(vmDir, { recursive: true });
        fs.mkdirSync(hooksDir, { recursive: true });
        fs.writeFileSync(path.join(hooksDir, '10-database'), HOOK, { mode: 0o755 });
        const started = Date.now();
        const checks: [string, boolean][] = [];
        const check = (what: string, good: boolean): string => {
          checks.push([what, good]);
          return good ? '' : ' (MISMATCH)';
        };
        say(`deltadisk demo, working in ${root}`);
        say('');

        // 1. A VM with two chain disks.
        fs.writeFileSync(path.join(vmDir, 'web.vmx'), VMX('web'));
        fs.writeFileSync(path.join(vmDir, 'web.nvram'), pattern('nvram', 8684));
        fs.writeFileSync(path.join(vmDir, 'web.vmsd'), '');
        const system = await Disk.create(path.join(vmDir, 'system.chain'), { size: 256 * MiB });
        const data = await Disk.create(path.join(vmDir, 'data.chain'), { size: 128 * MiB });
        say(`1. created VM "web" in ${path.relative(root, vmDir)}: web.vmx, nvram, and two chain disks (system.chain ${formatBytes(system.virtualSize)}, data.chain ${formatBytes(data.virtualSize)})`);

        // 2. The guest writes.
        await system.write(0, pattern('os', 24 * MiB));
        await data.write(0, pattern('db-v1', 8 * MiB));
        await system.close();
        await data.close();
        say('2. the guest installed its OS (24 MiB on system.chain) and a database (8 MiB on data.chain)');

        // 3. A VM-level snapshot: both disks at one instant, configuration kept in a .vmsn.
        const snap = await createVmSnapshot(vmDir, 'installed', { description: 'fresh install' });
        say(`3. VM snapshot "${snap.name}": ${snap.disks.length} disks at one instant, freeze window ${snap.freezeWindowMs.toFixed(1)} ms, recorded in web.vmsd and ${path.basename(snap.vmsn)}`);

        // 4. First backup, quiesced by the hook.
        await Repository.init(repoDir);
        const atFirst = { system: await diskDigest(path.join(vmDir, 'system.chain')), data: await diskDigest(path.join(vmDir, 'data.chain')) };
        const first = await backupWith(repoDir, vmDir, hooksDir);
        say(`4. backup ${first.id.slice(0, 8)}: ${first.vm.consistency}, freeze window ${first.vm.freezeWindowMs.toFixed(1)} ms` +
          `${check('first backup quiesced', first.vm.consistency === 'quiesced')}`);
        for (const h of first.vm.quiesce.hooks) say(`     hook ${h.hook} ${h.phase}: ${h.ok ? 'ok' : 'FAILED'} in ${h.durationMs} ms, said "${h.output.trim()}"`);
        say(`     ${formatBytes(first.summary.bytes)} of VM, ${formatBytes(first.summary.bytesRead)} read, ${formatBytes(first.summary.bytesStored)} stored (zero blocks are never read or stored)`);

        // 5. The VM changes a little.
        const live = await Disk.open(path.join(vmDir, 'data.chain'));
        await live.write(2 * MiB, pattern('db-v2', MiB));
        await live.close();
        fs.writeFileSync(path.join(vmDir, 'web.nvram'), pattern('nvram-2', 8684));
        const atSecond = { system: await diskDigest(path.join(vmDir, 'system.chain')), data: await diskDigest(path.join(vmDir, 'data.chain')) };
        say('5. the guest updated 1 MiB of its database; the firmware rewrote its nvram');

        // 6. Second backup: only what changed is read.
        const second = await backupWith(repoDir, vmDir, hooksDir);
        const share = second.summary.bytesRead / first.summary.bytesRead;
        say(`6. backup ${second.id.slice(0, 8)}: ${second.vm.consistency}, freeze window ${second.vm.freezeWindowMs.toFixed(1)} ms; ` +
          `read ${formatBytes(second.summary.bytesRead)} (${(share * 100).toFixed(1)} % of the first), stored ${formatBytes(second.summary.bytesStored)} new` +
          `${check('second backup reads under 10 % of the first', share < 0.1)}`);

        // 7. Restore the latest backup to a new directory and verify it.
        const target = path.join(root, 'restored', 'web');
        const restored = await withRepo({ repo: repoDir }, false, 'demo', (repo) => restoreVm(repo, second.id, { target, verify: true }));
        const same = {
          system: (await diskDigest(path.join(target, 'system.chain'))) === atSecond.system,
          data: (await diskDigest(path.join(target, 'data.chain'))) === atSecond.data,
          nvram: fs.readFileSync(path.join(target, 'web.nvram')).equals(fs.readFileSync(path.join(vmDir, 'web.nvram'))),
          vmx: fs.readFileSync(path.join(target, 'web.vmx')).equals(fs.readFileSync(path.join(vmDir, 'web.vmx'))),
        };
        const inv = await inspectVm(target);
        say(`7. restored backup ${second.id.slice(0, 8)} to ${path.relative(root, target)} (${formatBytes(restored.summary.bytes)}, verified): ` +
          `system.chain ${same.system ? '=' : '≠'}, data.chain ${same.data ? '=' : '≠'}, nvram ${same.nvram ? '=' : '≠'}, vmx ${same.vmx ? '=' : '≠'} the VM at capture; ` +
          `${inv.disks.length} disks found, ${inv.problems.filter((p) => p.severity === 'error').length} problems` +
          `${check('restored VM equals the second capture', Object.values(same).every(Boolean))}` +
          `${check('restored VM has no problems', inv.problems.every((p) => p.severity !== 'error'))}`);

        // 8. The first backup still holds the database as it was before the update.
        const older = path.join(root, 'restored', 'data-before-update');
        await withRepo({ repo: repoDir }, false, 'demo', (repo) => restoreVm(repo, first.id, { target: older, disks: ['scsi0:1'], flatten: true }));
        const oldData = digest(fs.readFileSync(path.join(older, 'data.raw')));
        say(`8. restored only data.chain from backup ${first.id.slice(0, 8)}, flattened to data.raw: reads ${oldData}…` +
          `${check('first backup holds the data disk before the update', oldData === atFirst.data)}${oldData === atFirst.data ? ' (the database before the update)' : ''}`);

        // 9. The VM snapshot came back with the VM: revert the restored copy to it.
        await revertVmSnapshot(target, 'installed');
        const reverted = await diskDigest(path.join(target, 'data.chain'));
        say(`9. reverted the restored VM to its snapshot "installed": data.chain reads ${reverted}…` +
          `${check('the restored VM snapshot holds the installed state', reverted === atFirst.data)}${reverted === atFirst.data ? ' (as when the snapshot was taken)' : ''}`);

        say('');
        say(`hooks ran:  ${fs.readFileSync(path.join(root, 'hooks.log'), 'utf8').trim().split('\n').length} times (see ${path.relative(root, path.join(root, 'hooks.log'))})`);
        say(`backups:    deltadisk snapshots --repo ${repoDir}`);
        say(`VM:         deltadisk vm inspect ${vmDir}`);
        const failed = checks.filter(([, good]) => !good);
        say(failed.length === 0 ? `all ${checks.length} checks passed in ${Date.now() - started} ms` : `FAILED: ${failed.map(([w]) => w).join('; ')}`);
        return failed.length === 0 ? 0 : 1;
      }),
    );
}

function backupWith(repoDir: string, vmDir: string, hooksDir: string): Promise<VmBackupResult> {
  return withRepo({ repo: repoDir }, 'shared', 'demo', (repo) => backupVm(repo, vmDir, { hooks: { hooksDir } }));
}
