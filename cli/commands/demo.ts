/**
 * `deltadisk demo` (what `npm start` runs): the main job on a built-in example,
 * narrated. Everything happens in a fresh temporary directory, which is kept so the
 * files can be looked at afterwards.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Command } from 'commander';
import { Disk } from '../../lib/index.js';
import { exportRawFile } from '../../lib/chain/export-raw.js';
import { handler } from '../context.js';
import { formatBytes } from '../parse-size.js';

const MiB = 1024 * 1024;

function digest(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex').slice(0, 16);
}

export function registerDemo(program: Command): void {
  program
    .command('demo')
    .description('run the main job on a built-in example and narrate it')
    .option('--dir <dir>', 'work in this (new) directory instead of a temporary one')
    .action(
      handler(async (ctx, o: { dir?: string }) => {
        const say = (s: string): void => ctx.out.line(s);
        const dir = o.dir === undefined ? fs.mkdtempSync(path.join(os.tmpdir(), 'deltadisk-demo-')) : path.resolve(o.dir);
        fs.mkdirSync(dir, { recursive: true });
        const file = path.join(dir, 'disk.chain');
        const started = Date.now();

        say(`deltadisk demo, working in ${dir}`);
        say('');
        const disk = await Disk.create(file, { size: 64 * MiB });
        say(`1. created ${path.basename(file)}: ${formatBytes(disk.virtualSize)} virtual, block size ${formatBytes(disk.blockSize)}, nothing stored yet`);

        const boot = Buffer.alloc(4 * MiB, 0x11);
        await disk.write(0, boot);
        await disk.write(10 * MiB + 123, Buffer.from('configuration v1'));
        await disk.flush();
        say(`2. wrote 4 MiB at offset 0 and a 16-byte record at ${10 * MiB + 123}, flushed (durable now)`);

        const before = await disk.read(0, disk.virtualSize);
        const snap = await disk.snapshot('before-upgrade', 'known good state');
        say(`3. snapshot "${snap.name}" taken; the current state reads ${digest(before)}…`);

        await disk.write(0, Buffer.alloc(MiB, 0x22));
        await disk.write(10 * MiB + 123, Buffer.from('configuration v2'));
        const record = (await disk.read(10 * MiB + 123, 16)).toString();
        say(`4. "upgraded": 1 MiB overwritten, the record now reads "${record}"`);

        const info1 = await disk.info();
        say(`   chain depth ${info1.depth}, ${formatBytes(info1.allocatedBytes)} allocated in ${info1.layerCount} delta files`);

        await disk.revert('before-upgrade', { keepCurrentAs: 'after-upgrade' });
        const reverted = await disk.read(0, disk.virtualSize);
        say(`5. reverted to "before-upgrade" (kept the upgrade as "after-upgrade"): reads ${digest(reverted)}… ` +
          (digest(reverted) === digest(before) ? '(identical to step 3)' : '(MISMATCH)'));

        const reader = await disk.openSnapshot('after-upgrade');
        const upgraded = (await reader.read(10 * MiB + 123, 16)).toString();
        await reader.close();
        say(`6. read snapshot "after-upgrade" without reverting: the record reads "${upgraded}"`);

        await disk.deleteSnapshot('after-upgrade');
        say(`7. deleted snapshot "after-upgrade"; its layer is gone, every other state reads as before`);

        const out = path.join(dir, 'disk.raw');
        await exportRawFile(disk.currentReader(), out);
        const exported = fs.readFileSync(out);
        say(`8. exported the current state to ${path.basename(out)}: ${formatBytes(exported.length)}, reads ${digest(exported)}… ` +
          (digest(exported) === digest(before) ? '(identical)' : '(MISMATCH)'));

        const info = await disk.info();
        await disk.close();
        say('');
        say('snapshots: ' + (await listSnapshots(file)));
        say(`files:     ${fs.readdirSync(dir).sort().join(', ')}`);
        say(`stored:    ${formatBytes(info.storedBytes)} of data for ${formatBytes(info.virtualSize)} virtual (${info.depth} layers deep)`);
        say(`done in ${Date.now() - started} ms. Try: deltadisk info ${file}`);
        const ok = digest(reverted) === digest(before) && digest(exported) === digest(before) && upgraded === 'configuration v2';
        return ok ? 0 : 1;
      }),
    );
}

async function listSnapshots(file: string): Promise<string> {
  const d = await Disk.open(file, { readOnly: true });
  try {
    return d.snapshots().map((s) => `${s.name}${s.current ? ' (current)' : ''}`).join(', ') || 'none';
  } finally {
    await d.close();
  }
}
