/**
 * One writer per disk across processes (issue 4, locking): real processes, real
 * lock files and the real abstract socket.
 *  - a second writable open fails at once with LOCKED naming the holder, from
 *    another process and from the same one; read-only opens work alongside;
 *  - a lock left by a SIGKILLed holder is taken over at once; one naming a holder on
 *    another host is refused (LOCKED) until `deltadisk unlock`;
 *  - a garbage lock file is LOCK_INVALID, pointing at `deltadisk unlock`, which
 *    removes it (and refuses while a live writer holds the lock);
 *  - 100 randomized races between two processes: exactly one writer wins each time.
 */
import { execFile, spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import { promisify } from 'node:util';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Disk } from '../../lib/chain/disk.js';
import { isDeltaDiskError } from '../../lib/errors.js';
import { buildHarness } from '../harness/child-build.js';
import { Figures } from '../harness/figures.js';
import { Rng, seedFromEnv, sizeFromEnv } from '../harness/rng.js';
import { tempDir } from '../helpers/temp-dir.js';

const RACES = sizeFromEnv('DELTADISK_LOCK_RACES', 100);
const CLI = path.resolve(import.meta.dirname, '../../dist/deltadisk.cjs');
const figures = new Figures('writer lock');
let childJs = '';
const { dir, cleanup } = tempDir('deltadisk-lock-');
let n = 0;

interface Reply {
  ok?: boolean;
  code?: string;
  holder?: { pid: number; host: string; purpose: string };
  message?: string;
  ms?: number;
  pid?: number;
}

class LockChild {
  readonly proc: ChildProcessWithoutNullStreams;
  readonly #replies: Reply[] = [];
  readonly #waiters: ((r: Reply) => void)[] = [];

  constructor() {
    this.proc = spawn(process.execPath, [childJs], { stdio: ['pipe', 'pipe', 'pipe'] });
    readline.createInterface({ input: this.proc.stdout }).on('line', (line) => {
      const r = JSON.parse(line) as Reply;
      const w = this.#waiters.shift();
      if (w) w(r);
      else this.#replies.push(r);
    });
  }

  next(): Promise<Reply> {
    const r = this.#replies.shift();
    if (r) return Promise.resolve(r);
    return new Promise((resolve) => this.#waiters.push(resolve));
  }

  async send(cmd: Record<string, unknown>): Promise<Reply> {
    this.proc.stdin.write(`${JSON.stringify(cmd)}\n`);
    return this.next();
  }

  async start(): Promise<this> {
    await this.next(); // ready
    return this;
  }

  kill(): Promise<void> {
    return new Promise((resolve) => {
      if (this.proc.exitCode !== null || this.proc.signalCode !== null) return resolve();
      this.proc.once('close', () => resolve());
      this.proc.kill('SIGKILL');
    });
  }
}

const children: LockChild[] = [];
async function child(): Promise<LockChild> {
  const c = await new LockChild().start();
  children.push(c);
  return c;
}

async function newDisk(): Promise<string> {
  const p = path.join(dir, `d${n++}`, 'disk.chain');
  fs.mkdirSync(path.dirname(p));
  const d = await Disk.create(p, { size: 1 << 20, blockSize: 4096 });
  await d.close();
  return p;
}

beforeAll(() => {
  childJs = path.join(buildHarness(), 'lock-child.js');
});
afterEach(async () => {
  for (const c of children.splice(0)) await c.kill();
});
afterAll(() => {
  cleanup();
  figures.publish();
});

describe('writer lock across processes', () => {
  it('refuses a second writer at once, naming the holder, and allows readers alongside', async () => {
    const p = await newDisk();
    const writer = await Disk.open(p);
    try {
      const other = await child();
      const r = await other.send({ cmd: 'open', path: p });
      expect(r.code).toBe('LOCKED');
      expect(r.holder?.pid).toBe(process.pid);
      expect(r.message).toContain(`pid ${process.pid}`);
      expect(r.ms).toBeLessThan(1000);
      const ro = await other.send({ cmd: 'open', path: p, readOnly: true });
      expect(ro.ok).toBe(true);
      await other.send({ cmd: 'close' });
      // The same process cannot open a second writer either.
      await expect(Disk.open(p)).rejects.toMatchObject({ code: 'LOCKED' });
      const reader = await Disk.open(p, { readOnly: true });
      await reader.close();
    } finally {
      await writer.close();
    }
    figures.add('second-writer refusals checked', 2);
  });

  it('takes over the lock of a holder killed with SIGKILL', async () => {
    const p = await newDisk();
    const holder = await child();
    expect((await holder.send({ cmd: 'open', path: p })).ok).toBe(true);
    const lockFile = `${p}.lock`;
    expect(JSON.parse(fs.readFileSync(lockFile, 'utf8')).pid).toBe(holder.proc.pid);
    await holder.kill();
    // The dead holder's lock file is still there; the new writer proves it gone and replaces it.
    expect(fs.existsSync(lockFile)).toBe(true);
    const t = performance.now();
    const d = await Disk.open(p);
    expect(performance.now() - t).toBeLessThan(1000);
    expect(JSON.parse(fs.readFileSync(lockFile, 'utf8')).pid).toBe(process.pid);
    // And it is ours alone: another process is refused.
    const other = await child();
    expect((await other.send({ cmd: 'open', path: p })).code).toBe('LOCKED');
    await d.close();
    expect(fs.existsSync(lockFile)).toBe(false);
    figures.add('locks of killed holders taken over');
  });

  it('reports a garbage lock file as LOCK_INVALID, with `deltadisk unlock` as the way out', async () => {
    const p = await newDisk();
    fs.writeFileSync(`${p}.lock`, '\u0000garbage{');
    const err = await Disk.open(p).catch((e: unknown) => e);
    expect(isDeltaDiskError(err, 'LOCK_INVALID')).toBe(true);
    expect((err as Error).message).toContain('deltadisk unlock');
    const errors = fs.readFileSync(path.resolve(import.meta.dirname, '../../docs/ERRORS.md'), 'utf8');
    expect(errors).toMatch(/## LOCK_INVALID[\s\S]*deltadisk unlock/);
    // Refused while a live writer holds the lock …
    fs.rmSync(`${p}.lock`);
    const writer = await child();
    expect((await writer.send({ cmd: 'open', path: p })).ok).toBe(true);
    const refused = await promisify(execFile)(process.execPath, [CLI, 'unlock', p]).catch((e: { code: number; stderr: string }) => e);
    expect((refused as { code: number }).code).not.toBe(0);
    expect((refused as { stderr: string }).stderr).toContain('LOCKED');
    await writer.kill();
    // … and removes the garbage once nobody does.
    fs.writeFileSync(`${p}.lock`, 'not json');
    await promisify(execFile)(process.execPath, [CLI, 'unlock', p]);
    expect(fs.existsSync(`${p}.lock`)).toBe(false);
    const d = await Disk.open(p);
    await d.close();
    figures.add('garbage lock files recovered with deltadisk unlock');
  });

  it('refuses a lock held from another host, until `deltadisk unlock` removes it', async () => {
    const p = await newDisk();
    const foreign = { host: 'another-host.example', pid: 4242, bootId: 'x', netns: 'y', started: new Date().toISOString(), purpose: 'open', token: 'abc' };
    fs.writeFileSync(`${p}.lock`, JSON.stringify(foreign));
    const err = await Disk.open(p).catch((e: unknown) => e);
    expect(isDeltaDiskError(err, 'LOCKED')).toBe(true);
    expect((err as { holder: unknown }).holder).toMatchObject({ host: 'another-host.example', pid: 4242 });
    expect((err as Error).message).toContain('deltadisk unlock');
    // Read-only opens are not blocked by it.
    const reader = await Disk.open(p, { readOnly: true });
    await reader.close();
    await promisify(execFile)(process.execPath, [CLI, 'unlock', p]);
    const d = await Disk.open(p);
    await d.close();
    figures.add('foreign-host locks refused until unlocked');
  });

  it(`lets exactly one of two racing processes win, ${RACES} times`, async () => {
    const p = await newDisk();
    const a = await child();
    const b = await child();
    const rng = new Rng(seedFromEnv());
    const wins = { a: 0, b: 0 };
    for (let i = 0; i < RACES; i++) {
      const at = Date.now() + 15;
      const [ra, rb] = await Promise.all([
        a.send({ cmd: 'open', path: p, at: at + rng.int(0, 2) }),
        b.send({ cmd: 'open', path: p, at: at + rng.int(0, 2) }),
      ]);
      const winners = [ra, rb].filter((r) => r.ok === true).length;
      const losers = [ra, rb].filter((r) => r.code === 'LOCKED').length;
      figures.add('lock races run');
      if (winners !== 1 || losers !== 1) {
        figures.fail(`race ${i}`, `replies ${JSON.stringify([ra, rb])}`);
      }
      if (ra.ok) wins.a++;
      if (rb.ok) wins.b++;
      if (ra.ok) await a.send({ cmd: 'close' });
      if (rb.ok) await b.send({ cmd: 'close' });
    }
    figures.add('lock races won by the first child', wins.a);
    figures.add('lock races won by the second child', wins.b);
    expect(figures.failures).toEqual([]);
  });
});
