/**
 * The child of the repository's SIGKILL runs: runs a seeded random repository
 * workload (backups, forgets, prunes; repo-workloads.ts) against real files and
 * prints one JSON line on stdout after each step returns, written synchronously
 * before the next step starts, so every acknowledgement the parent reads is one the
 * child really got. The parent kills it at a random moment.
 *
 *     node repo-sigkill-child.js <dir> <seed> <steps> [killAtCall]
 *
 * `<dir>` holds the repository (set up by the parent) and the source directory.
 * With killAtCall, the child SIGKILLs itself just before its Nth repository
 * file-system call; each acknowledgement gives the calls made so far, so a
 * calibration run maps calls to steps.
 */
import fs from 'node:fs';
import path from 'node:path';
import { nodeFileSystem } from '../../lib/io/node-file-system.js';
import { FaultFS, KillingFS } from './fault-fs.js';
import { randomRepoSpec, SOURCE_NAME, sysFor } from './repo-workloads.js';

function say(o: Record<string, unknown>): void {
  fs.writeSync(1, `${JSON.stringify(o)}\n`);
}

async function main(): Promise<void> {
  const [dir, seedText, countText, killText] = process.argv.slice(2);
  const spec = randomRepoSpec(Number(seedText), Number(countText));
  const fsys = killText === undefined ? new FaultFS(nodeFileSystem) : new KillingFS(nodeFileSystem, Number(killText));
  const sys = sysFor({ fs: fsys, dir: dir! }, { fs: nodeFileSystem, dir: path.join(dir!, SOURCE_NAME) });
  say({ ready: true, pid: process.pid });
  for (let i = 0; i < spec.steps.length; i++) {
    await spec.steps[i]!.run(sys);
    say({ ack: i, calls: fsys.calls });
  }
  say({ done: true, calls: fsys.calls });
}

main().catch((err: unknown) => {
  say({ error: err instanceof Error ? `${(err as { code?: string }).code ?? err.name}: ${err.message}` : String(err) });
  process.exitCode = 1;
});
