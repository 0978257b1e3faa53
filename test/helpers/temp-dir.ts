import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/** A fresh directory under the system temp dir; removed by the returned cleanup. */
export function tempDir(prefix = 'deltadisk-'): { dir: string; cleanup: () => void } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  return { dir, cleanup: () => fs.rmSync(dir, { recursive: true, force: true }) };
}

/** Runs of the property tests: DELTADISK_PROPERTY_RUNS, default `fallback`. */
export function propertyRuns(fallback: number): number {
  const v = Number(process.env.DELTADISK_PROPERTY_RUNS);
  return Number.isFinite(v) && v > 0 ? v : fallback;
}
