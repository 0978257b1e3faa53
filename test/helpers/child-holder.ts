/**
 * Holds a disk open (or a bare writer lock) in another process, for tests of
 * cross-process locking. The child uses the built library (dist/, built by
 * test/global-setup.ts), prints "ready" once it holds the lock, and lets go when
 * its stdin closes; `kill()` ends it with SIGKILL instead.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';

const root = path.resolve(import.meta.dirname, '../..');

export interface Holder {
  readonly pid: number;
  /** Closes the child's stdin, waits for it to release and exit. */
  release(): Promise<void>;
  /** SIGKILL: the lock is never released by the holder itself. */
  kill(): Promise<void>;
}

function exited(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve();
    else child.once('exit', () => resolve());
  });
}

/**
 * @param mode 'disk': Disk.open(target) for writing; 'lock': acquireWriterLock(target).
 */
export async function holdInChild(target: string, mode: 'disk' | 'lock' = 'disk'): Promise<Holder> {
  const lib = path.join(root, 'dist/lib/index.js');
  const lockLib = path.join(root, 'dist/lib/io/writer-lock.js');
  const script = `
    const { Disk } = await import(${JSON.stringify(lib)});
    const { acquireWriterLock } = await import(${JSON.stringify(lockLib)});
    const target = ${JSON.stringify(target)};
    const held = ${JSON.stringify(mode)} === 'disk' ? await Disk.open(target) : await acquireWriterLock(target, 'test holder');
    process.stdout.write('ready\\n');
    process.stdin.resume();
    process.stdin.on('end', async () => {
      if ('close' in held) await held.close(); else await held.release();
      process.exit(0);
    });
  `;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['pipe', 'pipe', 'pipe'] });
  let err = '';
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  await new Promise<void>((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('ready')) resolve();
    });
    child.once('exit', (code) => reject(new Error(`holder exited with ${code} before it was ready: ${err}`)));
  });
  return {
    pid: child.pid!,
    async release() {
      child.stdin!.end();
      await exited(child);
    },
    async kill() {
      child.kill('SIGKILL');
      await exited(child);
    },
  };
}
