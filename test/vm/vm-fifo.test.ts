/**
 * A FIFO in the VM directory (as the .vmx, the .vmsd or a descriptor) must not make
 * inspect hang: opening a FIFO for reading blocks until a writer comes. The file
 * type is checked before opening and a FIFO is refused (an error or a problem).
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { inspectVm } from '../../lib/vm/vm-inventory.js';
import { readVmdkFile } from '../../lib/vm/vmdk-reader.js';
import { nodeFileSystem } from '../../lib/io/node-file-system.js';
import { tempDir } from '../helpers/temp-dir.js';

const t = tempDir('dd-vm-fifo-');
const fifos: string[] = [];
afterAll(() => {
  // Should a reader be stuck in open() (the defect), a writer appearing releases it.
  for (const f of fifos) {
    try {
      fs.closeSync(fs.openSync(f, fs.constants.O_WRONLY | fs.constants.O_NONBLOCK));
    } catch {
      /* no reader waiting */
    }
  }
  t.cleanup();
});
let n = 0;

function mkfifo(p: string): void {
  execFileSync('mkfifo', [p]);
  fifos.push(p);
}

function vmDir(): string {
  const dir = path.join(t.dir, `vm${n++}`);
  fs.mkdirSync(dir);
  return dir;
}

/** Fails fast instead of hanging the run when the call blocks. */
function within<T>(p: Promise<T>, ms = 3000): Promise<T> {
  return Promise.race([p, new Promise<T>((_, reject) => setTimeout(() => reject(new Error('blocked: still waiting after 3 s')), ms).unref())]);
}

describe('FIFOs in a VM directory', () => {
  it('a FIFO .vmx is refused with UNSAFE_PATH, without blocking', async () => {
    const dir = vmDir();
    mkfifo(path.join(dir, 't.vmx'));
    await expect(within(inspectVm(dir))).rejects.toMatchObject({ code: 'UNSAFE_PATH' });
  }, 10_000);

  it('a FIFO .vmsd is a reported problem, without blocking', async () => {
    const dir = vmDir();
    fs.writeFileSync(path.join(dir, 't.vmx'), 'displayName = "v"\n');
    mkfifo(path.join(dir, 't.vmsd'));
    const inv = await within(inspectVm(dir));
    expect(inv.problems.some((p) => p.severity === 'error' && p.message.includes('UNSAFE_PATH'))).toBe(true);
    expect(inv.files.map((f) => f.name)).toEqual(['t.vmx']);
  }, 10_000);

  it('an unknown FIFO is not included even with includeUnknown (a capture would block cloning it)', async () => {
    const dir = vmDir();
    fs.writeFileSync(path.join(dir, 't.vmx'), 'displayName = "v"\n');
    mkfifo(path.join(dir, 'pipe.txt'));
    const inv = await within(inspectVm(dir, { includeUnknown: true }));
    expect(inv.files.map((f) => f.name)).toEqual(['t.vmx']);
    expect(inv.problems.some((p) => p.code === 'UNSAFE_PATH' && p.path === path.join(dir, 'pipe.txt'))).toBe(true);
  }, 10_000);

  it('readVmdkFile refuses a FIFO without blocking', async () => {
    const dir = vmDir();
    mkfifo(path.join(dir, 'disk.vmdk'));
    await expect(within(readVmdkFile(nodeFileSystem, path.join(dir, 'disk.vmdk')))).rejects.toMatchObject({ code: 'UNSAFE_PATH' });
  }, 10_000);
});
