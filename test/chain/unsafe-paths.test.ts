/**
 * Names inside a disk's metadata never reach outside the disk's directory unless
 * the user allowed the path (allowPaths / --allow-path / DELTADISK_ALLOW_PATHS), and
 * a refusal says the same thing whether the outside target exists or not, so a
 * crafted descriptor cannot probe the host (the instar "path-existence oracle"
 * test; CVE-2022-47951, CVE-2024-4467 class). Real files, real symlinks, the built
 * CLI.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { Disk } from '../../lib/chain/disk.js';
import { DeltaDiskError } from '../../lib/errors.js';
import { decodeDescriptor, encodeDescriptor, type Descriptor } from '../../lib/format/descriptor.js';
import { Figures } from '../harness/figures.js';
import { tempDir } from '../helpers/temp-dir.js';

const CLI = path.resolve(import.meta.dirname, '../../dist/deltadisk.cjs');
const { dir: root, cleanup } = tempDir('deltadisk-paths-');
const figures = new Figures('unsafe paths');
afterAll(() => {
  cleanup();
  figures.publish();
});
let n = 0;

/** A disk with a raw base inside its directory, and a spare directory outside it. */
async function fixture(): Promise<{ dir: string; p: string; outside: string; d: Descriptor }> {
  const top = path.join(root, `case${n++}`);
  const dir = path.join(top, 'vm');
  const outside = path.join(top, 'elsewhere');
  fs.mkdirSync(dir, { recursive: true });
  fs.mkdirSync(outside);
  fs.writeFileSync(path.join(dir, 'base.raw'), Buffer.alloc(64 * 1024, 7));
  const p = path.join(dir, 'disk.chain');
  const disk = await Disk.create(p, { base: path.join(dir, 'base.raw'), blockSize: 4096 });
  await disk.write(0, Buffer.alloc(4096, 1));
  await disk.close();
  return { dir, p, outside, d: decodeDescriptor(fs.readFileSync(p, 'utf8')) };
}

function rewrite(p: string, d: Descriptor): void {
  fs.writeFileSync(p, encodeDescriptor(d));
}

async function outcome(p: string, allowPaths: readonly string[] = []): Promise<{ code: string; message: string; path: string | undefined }> {
  try {
    const d = await Disk.open(p, { readOnly: true, allowPaths });
    await d.close();
    return { code: 'OPENED', message: '', path: undefined };
  } catch (err) {
    if (!(err instanceof DeltaDiskError)) throw err;
    return { code: err.code, message: err.message, path: err.path };
  }
}

/** The same descriptor opened with the outside target present and absent must be refused identically. */
async function sameRefusal(p: string, target: string, make: () => void): Promise<string> {
  fs.rmSync(target, { force: true });
  const absent = await outcome(p);
  make();
  const present = await outcome(p);
  fs.rmSync(target, { force: true });
  expect(present).toEqual(absent);
  figures.add('oracle pairs (target present / absent) compared');
  return present.code;
}

describe('paths named inside a disk', () => {
  it('refuse a base outside the directory identically whether it exists or not', async () => {
    const { dir, p, outside, d } = await fixture();
    const target = path.join(outside, 'secret.raw');
    const make = (): void => fs.writeFileSync(target, Buffer.alloc(64 * 1024, 7));
    const refs = ['../elsewhere/secret.raw', target, 'sub/../../elsewhere/secret.raw', `.${path.sep}..${path.sep}elsewhere${path.sep}secret.raw`];
    for (const file of refs) {
      rewrite(p, { ...d, base: { ...d.base!, file } });
      expect(await sameRefusal(p, target, make), file).toBe('UNSAFE_PATH');
    }
    // Through a symlink inside the directory: refused the same way, dangling or not.
    fs.symlinkSync(target, path.join(dir, 'link.raw'));
    rewrite(p, { ...d, base: { ...d.base!, file: 'link.raw' } });
    expect(await sameRefusal(p, target, make)).toBe('UNSAFE_PATH');
  });

  it('refuse devices, protocol prefixes and names that are not plain', async () => {
    const { p, d } = await fixture();
    for (const file of ['/dev/zero', 'json:{"driver":"file","filename":"/etc/passwd"}', 'nbd://127.0.0.1:10809/x', 'file:///etc/passwd', 'a\u0000b']) {
      rewrite(p, { ...d, base: { ...d.base!, file } });
      const o = await outcome(p);
      expect(o.code, file).toBe('UNSAFE_PATH');
      figures.add('hostile base references refused');
    }
    // /dev/zero stays refused even when the user allows it: not a regular file.
    rewrite(p, { ...d, base: { ...d.base!, file: '/dev/zero' } });
    expect((await outcome(p, ['/dev/zero'])).code).toBe('UNSAFE_PATH');
    // Layer file names must be plain names in the directory.
    for (const file of ['../elsewhere/x.delta', '/dev/zero', 'sub/x.delta', '..']) {
      const text = fs.readFileSync(p, 'utf8').replace(/"file": "disk-000001\.delta"/, `"file": ${JSON.stringify(file)}`);
      const raw = JSON.parse(text) as { layers: { file: string }[] };
      raw.layers[0]!.file = file;
      fs.writeFileSync(p, JSON.stringify(raw));
      expect((await outcome(p)).code, file).toBe('UNSAFE_PATH');
      figures.add('hostile layer file names refused');
    }
  });

  it('refuse a delta that is a symlink to outside, whether its target exists or not', async () => {
    const { dir, p, outside } = await fixture();
    const real = path.join(dir, 'disk-000001.delta');
    const target = path.join(outside, 'moved.delta');
    const saved = fs.readFileSync(real);
    fs.rmSync(real);
    fs.symlinkSync(target, real);
    expect(await sameRefusal(p, target, () => fs.writeFileSync(target, saved))).toBe('UNSAFE_PATH');
  });

  it('open an outside base only when the user allowed it (API and CLI)', async () => {
    const { dir, p, outside, d } = await fixture();
    const target = path.join(outside, 'shared.raw');
    fs.copyFileSync(path.join(dir, 'base.raw'), target);
    rewrite(p, { ...d, base: { ...d.base!, file: target } });
    expect((await outcome(p)).code).toBe('UNSAFE_PATH');
    expect((await outcome(p, [target])).code).toBe('OPENED');
    expect((await outcome(p, [outside])).code).toBe('OPENED');
    expect((await outcome(p, [path.join(outside, 'other.raw')])).code).toBe('UNSAFE_PATH');
    const run = promisify(execFile);
    const refused = await run(process.execPath, [CLI, 'info', p]).catch((e: { code: number; stderr: string }) => e);
    expect((refused as { code: number }).code).not.toBe(0);
    expect((refused as { stderr: string }).stderr).toContain('UNSAFE_PATH');
    await run(process.execPath, [CLI, '--allow-path', outside, 'info', p]);
    await run(process.execPath, [CLI, 'info', p], { env: { ...process.env, DELTADISK_ALLOW_PATHS: target } });
    figures.add('allowed outside paths opened (API and CLI)', 4);
  });
});
