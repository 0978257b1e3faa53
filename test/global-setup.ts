/**
 * Builds dist/ once before the suite (`npm run build`: tsc, then the CLI bundled into
 * dist/deltadisk.cjs): CLI tests run the built CLI as a real process.
 * Also gives the crash/fault harness a directory for its figures and prints their
 * totals when the run ends (test/harness/figures.ts), and the CLI a cache directory.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { printTotals } from './harness/figures.js';

export default function setup(): () => void {
  const root = path.resolve(import.meta.dirname, '..');
  execFileSync('npm', ['run', '--silent', 'build'], { cwd: root, stdio: 'inherit' });
  const figures = fs.mkdtempSync(path.join(os.tmpdir(), 'deltadisk-figures-'));
  process.env.DELTADISK_FIGURES_DIR = figures;
  // CLI backups keep an index cache: in a directory of the run's own, not ~/.cache.
  const cache = fs.mkdtempSync(path.join(os.tmpdir(), 'deltadisk-cache-'));
  process.env.DELTADISK_CACHE_DIR = cache;
  return () => {
    printTotals(figures);
    fs.rmSync(figures, { recursive: true, force: true });
    fs.rmSync(cache, { recursive: true, force: true });
  };
}
