/**
 * `deltadisk demo` as a real process: the narrated main job checks itself.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ok } from '../helpers/cli.js';
import { tempDir } from '../helpers/temp-dir.js';

let dir: string;
let cleanup: () => void;

beforeEach(() => {
  ({ dir, cleanup } = tempDir('deltadisk-cli-demo-'));
});
afterEach(() => cleanup());

describe('deltadisk demo', () => {
  it('runs the main job in the directory given, narrated, and checks itself (exit 0)', async () => {
    const demoDir = path.join(dir, 'demo');
    const r = await ok(['demo', '--dir', demoDir]);
    const out = r.stdout;
    for (const step of ['1. created VM', '2. the guest', '3. VM snapshot', '4. backup', '5. the guest updated', '6. backup', '7. restored backup', '8. restored only', '9. reverted']) {
      expect(out).toContain(step);
    }
    expect(out).not.toContain('MISMATCH');
    expect(out).toMatch(/^4\. backup [0-9a-f]{8}: quiesced, freeze window \d+\.\d ms$/m);
    expect(out).toMatch(/hook 10-database freeze: ok in \d+ ms, said "database: freeze"/);
    expect(out).toMatch(/^6\. backup [0-9a-f]{8}: quiesced, .*read 1\.\d+ MiB \(\d\.\d % of the first\)/m);
    expect(out).toMatch(/system\.chain =, data\.chain =, nvram =, vmx = the VM at capture; 2 disks found, 0 problems/);
    expect(out).toMatch(/^all 6 checks passed/m);
    expect(fs.readdirSync(path.join(demoDir, 'restored', 'web')).sort()).toEqual(expect.arrayContaining(['data.chain', 'system.chain', 'web.vmx', 'web.vmsd', 'web.nvram']));
    await ok(['vm', 'inspect', path.join(demoDir, 'restored', 'web')]);
    const list = await ok(['--json', 'snapshots', '--repo', path.join(demoDir, 'repo')]);
    expect((JSON.parse(list.stdout) as { vm: { consistency: string } }[]).map((b) => b.vm.consistency)).toEqual(['quiesced', 'quiesced']);
  });
});
