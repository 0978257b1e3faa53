/**
 * The figures the harness reports (issue 4: "print the figures at the end of the
 * run"): crash states explored, fault points injected, SIGKILL runs, hostile
 * variants and how each ended, lock races, and violations (which must be 0).
 *
 * Each test file adds to a Figures object and calls `publish` in afterAll: it
 * prints the file's figures and, when the suite's global setup provided a
 * directory (DELTADISK_FIGURES_DIR), writes them there so the global teardown can
 * print the totals of the whole run.
 */
import fs from 'node:fs';
import path from 'node:path';

export interface Failure {
  readonly where: string;
  readonly message: string;
}

export class Figures {
  readonly area: string;
  readonly counts = new Map<string, number>();
  readonly failures: Failure[] = [];

  constructor(area: string) {
    this.area = area;
  }

  add(key: string, n = 1): void {
    this.counts.set(key, (this.counts.get(key) ?? 0) + n);
  }

  get(key: string): number {
    return this.counts.get(key) ?? 0;
  }

  fail(where: string, message: string): void {
    this.failures.push({ where, message });
    this.add('violations');
  }

  /** A report of the first `max` failures, for an assertion message. */
  failureReport(max = 5): string {
    return formatFailures(this.failures, max);
  }

  text(): string {
    if (!this.counts.has('violations')) this.counts.set('violations', 0);
    const rows = [...this.counts].map(([k, v]) => `  ${k.padEnd(48)} ${v}`);
    return `[deltadisk figures] ${this.area}\n${rows.join('\n')}`;
  }

  publish(): void {
    console.log(this.text());
    const dir = process.env.DELTADISK_FIGURES_DIR;
    if (dir === undefined || dir === '') return;
    try {
      fs.mkdirSync(dir, { recursive: true });
      const file = path.join(dir, `${this.area.replace(/[^a-z0-9]+/gi, '-')}-${process.pid}-${Date.now()}.json`);
      fs.writeFileSync(file, JSON.stringify({ area: this.area, counts: Object.fromEntries(this.counts) }));
    } catch {
      // Figures are a report, never a reason to fail.
    }
  }
}

/** A readable list of the first `max` failures. */
export function formatFailures(failures: readonly Failure[], max = 5): string {
  const shown = failures.slice(0, max).map((f, i) => `${i + 1}. ${f.where}\n   ${f.message}`);
  const more = failures.length > max ? `\n… and ${failures.length - max} more` : '';
  return `${failures.length} violation(s):\n${shown.join('\n')}${more}`;
}

/** Prints the totals of every figures file in `dir` (called by the global teardown). */
export function printTotals(dir: string): void {
  let files: string[];
  try {
    files = fs.readdirSync(dir).filter((f) => f.endsWith('.json'));
  } catch {
    return;
  }
  if (files.length === 0) return;
  const byArea: string[] = [];
  // Per system (the first word of an area: chain, repository …): what was explored and what broke.
  const bySystem = new Map<string, { states: number; faults: number; kills: number; violations: number }>();
  let violations = 0;
  for (const f of files.sort()) {
    const { area, counts } = JSON.parse(fs.readFileSync(path.join(dir, f), 'utf8')) as { area: string; counts: Record<string, number> };
    violations += counts.violations ?? 0;
    byArea.push(`  ${area}\n${Object.entries(counts).map(([k, v]) => `    ${k.padEnd(46)} ${v}`).join('\n')}`);
    const system = area.split(' ')[0]!;
    const t = bySystem.get(system) ?? { states: 0, faults: 0, kills: 0, violations: 0 };
    t.states += counts['crash states explored'] ?? 0;
    t.faults += (counts['fault points injected'] ?? 0) + (counts['fault points injected (during recovery)'] ?? 0);
    t.kills += Object.entries(counts).filter(([k]) => k.startsWith('children killed')).reduce((a, [, v]) => a + v, 0);
    t.violations += counts.violations ?? 0;
    bySystem.set(system, t);
  }
  const summary = [...bySystem].map(([s, t]) => `  ${s.padEnd(12)} crash states ${t.states}, fault points ${t.faults}, processes killed ${t.kills}, violations ${t.violations}`);
  console.log(`\n[deltadisk figures] totals of this run\n${byArea.join('\n')}\n  by system:\n${summary.join('\n')}\n  violations in all areas: ${violations}\n`);
}
