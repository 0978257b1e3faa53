/**
 * Retention policies: the pure function against a plainly written reference, plus
 * properties (the newest backup survives; raising a limit never drops a kept backup).
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { applyRetention, type RetentionItem, type RetentionPolicy } from '../../lib/index.js';
import { isoWeek } from '../../lib/repo/retention.js';
import { propertyRuns } from '../helpers/temp-dir.js';

const DAY = 86_400_000;
const T0 = Date.UTC(2026, 0, 1);

/** The reference: for each rule, walk newest first and keep the first of each new bucket. */
function reference(items: readonly RetentionItem[], p: RetentionPolicy): Set<string> {
  const sorted = items.map((i, order) => ({ ...i, order })).sort((a, b) => Date.parse(b.time) - Date.parse(a.time) || b.order - a.order);
  const keep = new Set<string>(sorted.slice(0, p.keepLast ?? 0).map((i) => i.id));
  const bucket = {
    hourly: (t: Date) => t.toISOString().slice(0, 13),
    yearly: (t: Date) => t.toISOString().slice(0, 4),
    daily: (t: Date) => t.toISOString().slice(0, 10),
    weekly: (t: Date) => isoWeek(t.getUTCFullYear(), t.getUTCMonth() + 1, t.getUTCDate()),
    monthly: (t: Date) => t.toISOString().slice(0, 7),
  };
  const newest = Math.max(...items.map((i) => Date.parse(i.time)));
  const within = p.keepWithin;
  if (typeof within === 'number') for (const i of items) if (newest - Date.parse(i.time) <= within) keep.add(i.id);
  for (const [rule, n] of [['hourly', p.keepHourly], ['daily', p.keepDaily], ['weekly', p.keepWeekly], ['monthly', p.keepMonthly], ['yearly', p.keepYearly]] as const) {
    const seen: string[] = [];
    for (const i of sorted) {
      const b = bucket[rule](new Date(i.time));
      if (seen.includes(b)) continue;
      if (seen.length >= (n ?? 0)) break;
      seen.push(b);
      keep.add(i.id);
    }
  }
  for (const i of sorted) if (i.tags.some((t) => (p.keepTags ?? []).includes(t))) keep.add(i.id);
  let quiesced = 0;
  for (const i of sorted) if (i.quiesced === true && quiesced++ < (p.keepQuiesced ?? 0)) keep.add(i.id);
  return keep;
}

const items = fc.array(
  fc.record({ t: fc.oneof(fc.integer({ min: 0, max: 800 * DAY }), fc.integer({ min: 0, max: 3 * DAY })), tag: fc.constantFrom('', 'keep', 'x'), quiesced: fc.boolean() }),
  { maxLength: 60 },
).map((list) => list.map((x, i) => ({ id: `b${String(i).padStart(3, '0')}`, time: new Date(T0 + x.t).toISOString(), tags: x.tag === '' ? [] : [x.tag], quiesced: x.quiesced })));

const policy = fc.record({
  keepLast: fc.option(fc.nat(5), { nil: undefined }),
  keepHourly: fc.option(fc.nat(12), { nil: undefined }),
  keepDaily: fc.option(fc.nat(10), { nil: undefined }),
  keepWeekly: fc.option(fc.nat(6), { nil: undefined }),
  keepMonthly: fc.option(fc.nat(12), { nil: undefined }),
  keepYearly: fc.option(fc.nat(3), { nil: undefined }),
  keepWithin: fc.option(fc.integer({ min: 0, max: 40 * DAY }), { nil: undefined }),
  keepTags: fc.constantFrom([], ['keep']),
  keepQuiesced: fc.option(fc.nat(4), { nil: undefined }),
}).filter(
  (p) =>
    (p.keepLast ?? 0) + (p.keepHourly ?? 0) + (p.keepDaily ?? 0) + (p.keepWeekly ?? 0) + (p.keepMonthly ?? 0) + (p.keepYearly ?? 0) + p.keepTags.length + (p.keepQuiesced ?? 0) > 0 ||
    p.keepWithin !== undefined,
);

describe('retention policy', () => {
  it('keeps exactly what the reference keeps', () => {
    fc.assert(
      fc.property(items, policy, (list, p) => {
        const d = applyRetention(list, p, true);
        expect(new Set(d.keep.map((k) => k.id))).toEqual(reference(list, p));
        expect(d.keep.length + d.remove.length).toBe(list.length);
      }),
      { numRuns: propertyRuns(300) },
    );
  });

  it('always keeps the newest backup, and a larger limit never removes a kept one', () => {
    fc.assert(
      fc.property(items.filter((l) => l.length > 0), policy, fc.constantFrom('keepLast', 'keepHourly', 'keepDaily', 'keepWeekly', 'keepMonthly', 'keepYearly', 'keepWithin'), (list, p, rule) => {
        const d = applyRetention(list, p, true);
        const newest = list.map((i, order) => ({ ...i, order })).sort((a, b) => Date.parse(b.time) - Date.parse(a.time) || b.order - a.order)[0]!;
        const ruleCount = (p.keepLast ?? 0) + (p.keepHourly ?? 0) + (p.keepDaily ?? 0) + (p.keepWeekly ?? 0) + (p.keepMonthly ?? 0) + (p.keepYearly ?? 0);
        if (ruleCount > 0 || p.keepWithin !== undefined) expect(d.keep.map((k) => k.id)).toContain(newest.id);
        const more = applyRetention(list, { ...p, [rule]: (p[rule] ?? 0) + 1 }, true);
        const kept = new Set(more.keep.map((k) => k.id));
        for (const k of d.keep) expect(kept.has(k.id)).toBe(true);
      }),
      { numRuns: propertyRuns(200) },
    );
  });

  it('follows the calendar: days, ISO weeks across a year end, months', () => {
    const at = (iso: string, id: string): RetentionItem => ({ id, time: iso, tags: [] });
    const list = [
      at('2026-12-31T23:00:00Z', 'thu'), // ISO week 2026-W53
      at('2027-01-01T10:00:00Z', 'fri'), // same ISO week, next year
      at('2027-01-01T09:00:00Z', 'fri-early'),
      at('2027-01-04T10:00:00Z', 'mon'), // 2027-W01
    ];
    expect(applyRetention(list, { keepDaily: 2 }, true).keep.map((k) => k.id)).toEqual(['mon', 'fri']);
    expect(applyRetention(list, { keepWeekly: 2 }, true).keep.map((k) => k.id)).toEqual(['mon', 'fri']);
    expect(applyRetention(list, { keepMonthly: 2 }, true).keep.map((k) => k.id)).toEqual(['mon', 'thu']);
    expect(isoWeek(2026, 12, 31)).toBe('2026-W53');
    expect(isoWeek(2021, 1, 3)).toBe('2020-W53');
  });

  it('keeps the n newest quiesced backups however many crash-consistent ones came after', () => {
    const at = (h: number, id: string, quiesced: boolean): RetentionItem => ({ id, time: new Date(T0 + h * 3_600_000).toISOString(), tags: [], quiesced });
    const list = [at(1, 'q1', true), at(2, 'q2', true), at(3, 'c3', false), at(4, 'c4', false), at(5, 'c5', false)];
    const d = applyRetention(list, { keepLast: 1, keepQuiesced: 1 }, true);
    expect(d.keep).toEqual([{ id: 'c5', reasons: ['last'] }, { id: 'q2', reasons: ['quiesced'] }]);
    expect(d.remove).toEqual(['c4', 'c3', 'q1']);
  });

  it('counts hours and years, and keeps within a span of the newest backup, not of now', () => {
    const at = (iso: string, id: string): RetentionItem => ({ id, time: iso, tags: [] });
    // A source last backed up long ago: a span measured from now would forget all of it.
    const list = [
      at('2020-03-10T12:40:00Z', 'newest'),
      at('2020-03-10T12:05:00Z', 'same-hour'),
      at('2020-03-10T11:59:00Z', 'hour-before'),
      at('2020-03-03T12:40:00Z', 'week-before'),
      at('2020-03-03T12:39:59Z', 'just-older'),
      at('2019-12-31T23:00:00Z', 'last-year'),
      at('2018-06-01T00:00:00Z', 'two-years'),
    ];
    expect(applyRetention(list, { keepHourly: 2 }, true).keep.map((k) => k.id)).toEqual(['newest', 'hour-before']);
    expect(applyRetention(list, { keepYearly: 3 }, true).keep.map((k) => k.id)).toEqual(['newest', 'last-year', 'two-years']);
    const within = applyRetention(list, { keepWithin: 7 * DAY }, true);
    expect(within.keep).toEqual(['newest', 'same-hour', 'hour-before', 'week-before'].map((id) => ({ id, reasons: ['within 7d'] })));
    expect(within.remove).toEqual(['just-older', 'last-year', 'two-years']);
    expect(() => applyRetention(list, { keepWithin: -1 }, true)).toThrow(/keepWithin/);
    expect(() => applyRetention(list, { keepWithin: { days: 1.5 } }, true)).toThrow(/keepWithin/);
    expect(() => applyRetention(list, { keepYearly: 1.5 }, true)).toThrow(/keepYearly/);
  });

  it('counts a calendar span back from the newest backup as restic does (1y2m3d4h)', () => {
    const at = (iso: string): RetentionItem => ({ id: iso, time: iso, tags: [] });
    const list = ['2021-03-31T12:00:00Z', '2021-03-02T12:00:00Z', '2021-03-02T11:59:59Z', '2020-03-02T11:00:00Z'].map(at);
    // One month before March 31st is "February 31st", which the calendar (and Go's AddDate) makes March 3rd (2021).
    expect(applyRetention(list, { keepWithin: { months: 1 } }, true).keep.map((k) => k.id)).toEqual(['2021-03-31T12:00:00Z']);
    expect(applyRetention(list, { keepWithin: { days: 29 } }, true).keep.map((k) => k.id)).toEqual(['2021-03-31T12:00:00Z', '2021-03-02T12:00:00Z']);
    const d = applyRetention(list, { keepWithin: { years: 1, months: 0, days: 29, hours: 1 } }, true);
    expect(d.keep.map((k) => k.id)).toEqual(['2021-03-31T12:00:00Z', '2021-03-02T12:00:00Z', '2021-03-02T11:59:59Z', '2020-03-02T11:00:00Z']);
    expect(d.keep[0]!.reasons).toEqual(['within 1y29d1h']);
  });

  it('refuses an empty policy', () => {
    expect(() => applyRetention([], {}, true)).toThrow(/no keep rule/);
  });
});
