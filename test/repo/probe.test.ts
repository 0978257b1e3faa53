import { it } from 'vitest';
import { checkedRepoWorkload } from '../harness/repo-checker.js';
import { REPO_WORKLOAD_SPECS } from '../harness/repo-workloads.js';
import { CrashFS } from '../harness/crash-fs.js';
import { countCalls, runWithFault, type FaultEnv } from '../harness/fault-sweep.js';
import { Figures } from '../harness/figures.js';
async function crashFiles(): Promise<FaultEnv> {
  const crash = new CrashFS();
  const dir = '/fault/vm';
  await crash.mkdirp(dir);
  return { fs: crash, dir, crash, cleanup: () => undefined };
}
it('probe', async () => {
  for (const spec of REPO_WORKLOAD_SPECS) {
    const w = checkedRepoWorkload(spec);
    const any = await countCalls(w, crashFiles, 'any');
    const mut = await countCalls(w, crashFiles, ['open','mkdir','rename','unlink','rmdir','link','syncDir','write','datasync','truncate']);
    const syncs = await countCalls(w, crashFiles, ['datasync', 'syncDir']);
    const f = new Figures('probe');
    const t = performance.now();
    for (let at = 1; at <= any; at += Math.ceil(any / 20)) await runWithFault(w, crashFiles, { at, ops: 'any', errno: 'EIO', persistent: false }, f);
    console.log(spec.name, any, mut, syncs, 'ms per run', (performance.now() - t) / 20, f.text(), f.failureReport(10));
  }
}, 600000);
