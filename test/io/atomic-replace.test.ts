/**
 * atomicReplace and createDurable on real files: the target is always whole (old
 * or new, never half), a failure at any step leaves no temporary file behind, and
 * createDurable never replaces anything.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { isDeltaDiskError } from '../../lib/errors.js';
import { atomicReplace, createDurable, TEMP_INFIX, tempNameFor } from '../../lib/io/atomic-replace.js';
import { nodeFileSystem } from '../../lib/io/node-file-system.js';
import { FaultFS, type FaultOp as Op } from '../harness/fault-fs.js';
import { codeOf } from '../helpers/errors.js';
import { tempDir } from '../helpers/temp-dir.js';

let dir: string;
let cleanup: () => void;
let target: string;

beforeEach(() => {
  ({ dir, cleanup } = tempDir('deltadisk-atomic-'));
  target = path.join(dir, 'disk.chain');
});
afterEach(() => cleanup());

const names = () => fs.readdirSync(dir).sort();


describe('tempNameFor', () => {
  it('names a sibling of the target, recognisable and unique', () => {
    const a = tempNameFor(target);
    expect(path.dirname(a)).toBe(dir);
    expect(path.basename(a).startsWith(`disk.chain${TEMP_INFIX}`)).toBe(true);
    expect(new Set(Array.from({ length: 100 }, () => tempNameFor(target))).size).toBe(100);
  });
});

describe('atomicReplace', () => {
  it('creates a missing target and replaces an existing one', async () => {
    await atomicReplace(nodeFileSystem, target, Buffer.from('one'));
    expect(fs.readFileSync(target, 'utf8')).toBe('one');
    await atomicReplace(nodeFileSystem, target, Buffer.from('two, longer'));
    expect(fs.readFileSync(target, 'utf8')).toBe('two, longer');
    await atomicReplace(nodeFileSystem, target, Buffer.from('3'));
    expect(fs.readFileSync(target, 'utf8')).toBe('3');
    expect(names()).toEqual(['disk.chain']);
  });

  it('replaces a symlink at the target with a file, leaving the link target alone', async () => {
    const victim = path.join(dir, 'victim');
    fs.writeFileSync(victim, 'precious');
    fs.symlinkSync(victim, target);
    await atomicReplace(nodeFileSystem, target, Buffer.from('new'));
    expect(fs.lstatSync(target).isFile()).toBe(true);
    expect(fs.readFileSync(victim, 'utf8')).toBe('precious');
  });

  for (const op of ['create', 'write', 'datasync', 'rename'] as Op[]) {
    it(`a failed ${op} leaves the old content and no temporary file`, async () => {
      fs.writeFileSync(target, 'old content');
      const ffs = new FaultFS(nodeFileSystem, { trace: true }).fail({ op });
      const code = await codeOf(atomicReplace(ffs, target, Buffer.from('new content')));
      expect(code).toBe('IO_ERROR');
      expect(fs.readFileSync(target, 'utf8')).toBe('old content');
      expect(names()).toEqual(['disk.chain']);
    });
  }

  it('a failed directory fsync is reported, after the new content is in place', async () => {
    fs.writeFileSync(target, 'old');
    const ffs = new FaultFS(nodeFileSystem, { trace: true }).fail({ op: 'syncDir' });
    expect(await codeOf(atomicReplace(ffs, target, Buffer.from('new')))).toBe('IO_ERROR');
    expect(fs.readFileSync(target, 'utf8')).toBe('new');
    expect(names()).toEqual(['disk.chain']);
  });

  it('orders the steps: write, fsync the file, rename, fsync the directory', async () => {
    const ffs = new FaultFS(nodeFileSystem, { trace: true });
    await atomicReplace(ffs, target, Buffer.from('x'));
    const ops = ffs.trace!.map((c) => c.split(' ')[0]);
    expect(ops).toEqual(['create', 'write', 'datasync', 'close', 'rename', 'syncDir']);
  });

  it('for a cache (durable: false) writes and renames without syncing', async () => {
    const ffs = new FaultFS(nodeFileSystem, { trace: true });
    await atomicReplace(ffs, target, Buffer.from('cached'), { durable: false });
    expect(ffs.trace!.map((c) => c.split(' ')[0])).toEqual(['create', 'write', 'close', 'rename']);
    expect(fs.readFileSync(target, 'utf8')).toBe('cached');
    expect(names()).toEqual(['disk.chain']);
  });

  it('a full device is NO_SPACE, with the target named', async () => {
    const ffs = new FaultFS(nodeFileSystem, { trace: true }).fail({ op: 'write', code: 'ENOSPC' });
    try {
      await atomicReplace(ffs, target, Buffer.from('x'));
      expect.unreachable();
    } catch (err) {
      expect(isDeltaDiskError(err, 'NO_SPACE') && err.path).toBe(target);
    }
    expect(names()).toEqual([]);
  });

  it('a reader never sees a half-written file while it is replaced over and over', async () => {
    const size = 256 * 1024;
    const contents = [Buffer.alloc(size, 0x41), Buffer.alloc(size, 0x42)];
    fs.writeFileSync(target, contents[0]!);
    let stop = false;
    let reads = 0;
    const reader = (async () => {
      while (!stop) {
        const data = await fs.promises.readFile(target);
        reads++;
        expect(data.length).toBe(size);
        expect(data.equals(contents[0]!) || data.equals(contents[1]!)).toBe(true);
      }
    })();
    for (let i = 0; i < 40; i++) await atomicReplace(nodeFileSystem, target, contents[i % 2]!);
    stop = true;
    await reader;
    expect(reads).toBeGreaterThan(0);
    expect(names()).toEqual(['disk.chain']);
  });
});

describe('createDurable', () => {
  it('creates a new file with the content', async () => {
    await createDurable(nodeFileSystem, target, Buffer.from('hello'));
    expect(fs.readFileSync(target, 'utf8')).toBe('hello');
    expect(names()).toEqual(['disk.chain']);
  });

  it('refuses an existing target with ALREADY_EXISTS, changing nothing', async () => {
    fs.writeFileSync(target, 'existing');
    expect(await codeOf(createDurable(nodeFileSystem, target, Buffer.from('new')))).toBe('ALREADY_EXISTS');
    expect(fs.readFileSync(target, 'utf8')).toBe('existing');
    expect(names()).toEqual(['disk.chain']);
  });

  it('refuses a dangling symlink at the target without creating its target', async () => {
    const victim = path.join(dir, 'victim');
    fs.symlinkSync(victim, target);
    expect(await codeOf(createDurable(nodeFileSystem, target, Buffer.from('new')))).toBe('ALREADY_EXISTS');
    expect(fs.existsSync(victim)).toBe(false);
    expect(names()).toEqual(['disk.chain']);
  });

  for (const op of ['write', 'datasync', 'link'] as Op[]) {
    it(`a failed ${op} creates nothing and leaves no temporary file`, async () => {
      const ffs = new FaultFS(nodeFileSystem, { trace: true }).fail({ op });
      expect(await codeOf(createDurable(ffs, target, Buffer.from('x')))).toBe('IO_ERROR');
      expect(names()).toEqual([]);
    });
  }

  it('of many concurrent creators exactly one wins, and the file is whole', async () => {
    const results = await Promise.allSettled(
      Array.from({ length: 10 }, (_, i) => createDurable(nodeFileSystem, target, Buffer.alloc(100_000, 0x30 + i))),
    );
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    for (const r of results) if (r.status === 'rejected') expect(isDeltaDiskError(r.reason, 'ALREADY_EXISTS')).toBe(true);
    const data = fs.readFileSync(target);
    expect(data.length).toBe(100_000);
    expect(data.every((b) => b === data[0])).toBe(true);
    expect(names()).toEqual(['disk.chain']);
  });
});
