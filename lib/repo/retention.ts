/**
 * Retention policies (`forget --keep-…`): which backups to keep, as a pure function.
 *
 * Semantics are restic's: backups are taken newest first (by time; equal times in
 * the order given, the later counting as newer); `keepLast` n keeps the n
 * newest; `keepDaily` n keeps, for each of the n most recent days that have backups,
 * the newest backup of that day (`keepHourly` by hour, `keepWeekly` by ISO week,
 * `keepMonthly` by month, `keepYearly` by year); `keepWithin` keeps every backup
 * taken within a span before the newest one (restic's `--keep-within 1y2m3d4h`, in
 * calendar years, months and days and then hours, or milliseconds; measured from the
 * newest backup, not from now, so a source that stopped being backed up keeps its
 * last ones);
 * `keepTags` keeps every backup carrying one of the tags; `keepQuiesced` n keeps the
 * n newest quiesced VM backups (so a run of crash-consistent ones never pushes the
 * last application-consistent points out). A backup is kept if any rule
 * keeps it. Days, weeks and months are in local time unless `utc`.
 */
import { DeltaDiskError } from '../errors.js';

export interface RetentionPolicy {
  readonly keepLast?: number | undefined;
  readonly keepHourly?: number | undefined;
  readonly keepDaily?: number | undefined;
  readonly keepWeekly?: number | undefined;
  readonly keepMonthly?: number | undefined;
  readonly keepYearly?: number | undefined;
  /** Keep every backup taken at most this long (milliseconds, or a calendar span) before the newest. */
  readonly keepWithin?: number | CalendarSpan | undefined;
  readonly keepTags?: readonly string[] | undefined;
  /** Keep the n newest quiesced backups (VM backups whose freeze hooks all succeeded). */
  readonly keepQuiesced?: number | undefined;
}

/** A span back in the calendar: years, months and days as the calendar counts them, then hours. */
export interface CalendarSpan {
  readonly years?: number;
  readonly months?: number;
  readonly days?: number;
  readonly hours?: number;
}

export interface RetentionItem {
  readonly id: string;
  /** ISO time. */
  readonly time: string;
  readonly tags: readonly string[];
  /** A VM backup taken with every freeze hook succeeding. */
  readonly quiesced?: boolean;
}

export interface RetentionDecision {
  /** Kept backups with why, newest first. */
  readonly keep: { readonly id: string; readonly reasons: string[] }[];
  /** Backups to forget, newest first. */
  readonly remove: string[];
}

function parts(ms: number, utc: boolean): { y: number; m: number; d: number; h: number } {
  const t = new Date(ms);
  return utc
    ? { y: t.getUTCFullYear(), m: t.getUTCMonth() + 1, d: t.getUTCDate(), h: t.getUTCHours() }
    : { y: t.getFullYear(), m: t.getMonth() + 1, d: t.getDate(), h: t.getHours() };
}

/** ISO 8601 week of a calendar day: `YYYY-Www` (weeks start on Monday; week 1 holds January 4th). */
export function isoWeek(y: number, m: number, d: number): string {
  const day = Date.UTC(y, m - 1, d);
  const dow = (new Date(day).getUTCDay() + 6) % 7; // Monday = 0
  const thursday = day + (3 - dow) * 86_400_000;
  const ty = new Date(thursday).getUTCFullYear();
  const week = 1 + Math.floor((thursday - Date.UTC(ty, 0, 1)) / (7 * 86_400_000));
  return `${ty}-W${String(week).padStart(2, '0')}`;
}

export type CalendarRule = 'hourly' | 'daily' | 'weekly' | 'monthly' | 'yearly';

export function bucketOf(rule: CalendarRule, ms: number, utc: boolean): string {
  const p = parts(ms, utc);
  if (rule === 'yearly') return `${p.y}`;
  if (rule === 'monthly') return `${p.y}-${p.m}`;
  if (rule === 'weekly') return isoWeek(p.y, p.m, p.d);
  if (rule === 'hourly') return `${p.y}-${p.m}-${p.d} ${p.h}h`;
  return `${p.y}-${p.m}-${p.d}`;
}

const COUNTS = ['keepLast', 'keepHourly', 'keepDaily', 'keepWeekly', 'keepMonthly', 'keepYearly', 'keepQuiesced'] as const;

export function hasPolicy(p: RetentionPolicy): boolean {
  return COUNTS.some((k) => (p[k] ?? 0) > 0) || (p.keepTags ?? []).length > 0 || p.keepWithin !== undefined;
}

const SPAN_UNITS = [['years', 'y'], ['months', 'm'], ['days', 'd'], ['hours', 'h']] as const;

/** `keepWithin` as restic writes it (`1y2m3d4h`); milliseconds as whole days or hours. */
export function formatWithin(w: number | CalendarSpan): string {
  if (typeof w === 'number') {
    const h = Math.round(w / 3_600_000);
    return h % 24 === 0 ? `${h / 24}d` : `${h}h`;
  }
  const text = SPAN_UNITS.map(([k, u]) => (w[k] ?? 0) > 0 ? `${w[k]}${u}` : '').join('');
  return text === '' ? '0h' : text;
}

/** The earliest time `keepWithin` keeps, counted back from `newest`. */
function cutoffOf(newest: number, w: number | CalendarSpan, utc: boolean): number {
  if (typeof w === 'number') return newest - w;
  const t = new Date(newest);
  if (utc) t.setUTCFullYear(t.getUTCFullYear() - (w.years ?? 0), t.getUTCMonth() - (w.months ?? 0), t.getUTCDate() - (w.days ?? 0));
  else t.setFullYear(t.getFullYear() - (w.years ?? 0), t.getMonth() - (w.months ?? 0), t.getDate() - (w.days ?? 0));
  return t.getTime() - (w.hours ?? 0) * 3_600_000;
}

export function applyRetention(items: readonly RetentionItem[], policy: RetentionPolicy, utc = false): RetentionDecision {
  for (const k of COUNTS) {
    const v = policy[k];
    if (v !== undefined && (!Number.isSafeInteger(v) || v < 0)) throw new DeltaDiskError('INVALID_ARGUMENT', `${k} must be a whole number ≥ 0`);
  }
  const within = policy.keepWithin;
  const whole = (v: unknown): boolean => v === undefined || (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0 && v <= 1e6);
  if (within !== undefined && (typeof within === 'number' ? !(Number.isSafeInteger(within) && within >= 0) : !SPAN_UNITS.every(([k]) => whole(within[k])))) {
    throw new DeltaDiskError('INVALID_ARGUMENT', 'keepWithin must be whole milliseconds ≥ 0, or whole years, months, days and hours ≥ 0');
  }
  if (!hasPolicy(policy)) throw new DeltaDiskError('INVALID_ARGUMENT', 'no keep rule given: nothing would be kept; give at least one --keep-… option');
  const sorted = [...items]
    .map((i, order) => ({ ...i, ms: Date.parse(i.time), order }))
    .sort((a, b) => b.ms - a.ms || (a.time < b.time ? 1 : a.time > b.time ? -1 : b.order - a.order));
  const reasons = new Map<string, string[]>(sorted.map((i) => [i.id, []]));
  sorted.slice(0, policy.keepLast ?? 0).forEach((i) => reasons.get(i.id)!.push('last'));
  sorted
    .filter((i) => i.quiesced === true)
    .slice(0, policy.keepQuiesced ?? 0)
    .forEach((i) => reasons.get(i.id)!.push('quiesced'));
  if (within !== undefined) {
    const newest = sorted.reduce((m, i) => (Number.isNaN(i.ms) ? m : Math.max(m, i.ms)), -Infinity);
    const cutoff = Number.isFinite(newest) ? cutoffOf(newest, within, utc) : Infinity;
    for (const i of sorted) if (i.ms >= cutoff) reasons.get(i.id)!.push(`within ${formatWithin(within)}`);
  }
  const rules: [CalendarRule, number][] = [
    ['hourly', policy.keepHourly ?? 0],
    ['daily', policy.keepDaily ?? 0],
    ['weekly', policy.keepWeekly ?? 0],
    ['monthly', policy.keepMonthly ?? 0],
    ['yearly', policy.keepYearly ?? 0],
  ];
  for (const [rule, n] of rules) {
    let last: string | undefined;
    let kept = 0;
    for (const i of sorted) {
      if (kept >= n) break;
      const b = bucketOf(rule, Number.isNaN(i.ms) ? 0 : i.ms, utc);
      if (b === last) continue;
      last = b;
      kept++;
      reasons.get(i.id)!.push(`${rule} ${b}`);
    }
  }
  const tags = new Set(policy.keepTags ?? []);
  if (tags.size > 0) for (const i of sorted) if (i.tags.some((t) => tags.has(t))) reasons.get(i.id)!.push('tagged');
  return {
    keep: sorted.filter((i) => reasons.get(i.id)!.length > 0).map((i) => ({ id: i.id, reasons: reasons.get(i.id)! })),
    remove: sorted.filter((i) => reasons.get(i.id)!.length === 0).map((i) => i.id),
  };
}
