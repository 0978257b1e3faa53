/**
 * The child of the SIGKILL runs: runs the steps of a random chain workload against
 * real files and prints one JSON line on stdout after each step returns, written
 * synchronously before the next step starts, so every acknowledgement the parent
 * reads is one the child really got. The parent kills it at a random moment.
 *
 *     node sigkill-child.js <descriptor> <seed> <steps> [killAtCall]
 *
 * With killAtCall, the child SIGKILLs itself just before its Nth file-system call
 * (the way SQLite's writecrash.test kills a child inside its Nth write), which
 * places kills inside operations exactly; each acknowledgement then also gives the
 * number of calls made so far, so a calibration run maps calls to operations.
 */
import fs from 'node:fs';
import { Disk } from '../../lib/chain/disk.js';
import { nodeFileSystem } from '../../lib/io/node-file-system.js';
import { randomChainWorkload } from './chain-workloads.js';
import type { ChainSys } from './chain-steps.js';
import { FaultFS, KillingFS } from './fault-fs.js';

function say(o: Record<string, unknown>): void {
  fs.writeSync(1, `${JSON.stringify(o)}\n`);
}

async function main(): Promise<void> {
  const [descriptor, seedText, countText, killText] = process.argv.slice(2);
  const w = randomChainWorkload(Number(seedText), Number(countText));
  const fsys = killText === undefined ? nodeFileSystem : new KillingFS(nodeFileSystem, Number(killText));
  // The real writer lock, also through the killing file system.
  const options = { fs: fsys, lock: true };
  const sys: ChainSys = { disk: await Disk.open(descriptor!, options), path: descriptor!, options };
  say({ ready: true, pid: process.pid });
  for (let i = 0; i < w.steps.length; i++) {
    await w.steps[i]!.run(sys);
    say({ ack: i, calls: fsys instanceof FaultFS ? fsys.calls : undefined });
  }
  await sys.disk.close();
  say({ done: true, calls: fsys instanceof FaultFS ? fsys.calls : undefined });
}

main().catch((err: unknown) => {
  say({ error: err instanceof Error ? `${(err as { code?: string }).code ?? err.name}: ${err.message}` : String(err) });
  process.exitCode = 1;
});
