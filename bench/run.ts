/**
 * Runs every benchmark (or those named on the command line) one after another, each
 * in its own process, and exits non-zero if any missed its target or failed to
 * verify its result. `npm run bench [-- chain-read chain-write …]`.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { NODE_FLAGS } from '../cli/node-flags.js';

const here = import.meta.dirname;
const all = fs
  .readdirSync(here)
  .filter((f) => f.endsWith('.js') && f !== 'run.js' && f !== 'bench-util.js')
  .map((f) => f.slice(0, -3))
  .sort();
const wanted = process.argv.slice(2);
const chosen = wanted.length > 0 ? all.filter((b) => wanted.includes(b)) : all;
let failed = 0;
for (const name of chosen) {
  console.log(`\n== ${name}`);
  // Under the executable's V8 options (a benchmark started without them restarts itself).
  const r = spawnSync(process.execPath, [...NODE_FLAGS, path.join(here, `${name}.js`)], { stdio: 'inherit' });
  if (r.status !== 0) failed++;
}
console.log(`\n${chosen.length - failed} benchmarks met their targets, ${failed} did not`);
process.exitCode = failed > 0 ? 1 : 0;
