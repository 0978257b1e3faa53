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
    for (const step of ['1. created', '2. wrote', '3. snapshot', '4. "upgraded"', '5. reverted', '6. read snapshot', '7. deleted snapshot', '8. exported']) {
      expect(out).toContain(step);
    }
    expect(out).not.toContain('MISMATCH');
    expect(out).toContain('(identical to step 3)');
    expect(fs.readdirSync(demoDir)).toEqual(expect.arrayContaining(['disk.chain', 'disk.raw']));
    await ok(['info', path.join(demoDir, 'disk.chain')]);
  });
});
