/**
 * The state record of an unfinished merge (docs/FORMAT.md, "Operation state"):
 * round trip, checksum, version refusal, one hand-written record per rule.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decodeOpState, encodeOpState, type MergeState } from '../../lib/format/op-state.js';
import { withChecksum as checksummed } from '../helpers/canonical-json.js';
import { codeOfSync } from '../helpers/errors.js';
import { propertyRuns } from '../helpers/temp-dir.js';

const FIELDS = ['format', 'version', 'op', 'diskId', 'direction', 'removed', 'survivors', 'progress', 'started'];

const withChecksum = (o: Record<string, unknown>): string => checksummed(FIELDS, o);

const ID = 'abcdef01-0000-4000-8000-000000000000';

function valid(): Record<string, unknown> {
  return {
    format: 'deltadisk-op',
    version: 1,
    op: 'merge',
    diskId: ID,
    direction: 'stream',
    removed: { id: '11111111-2222', file: 'disk-000002.delta', generation: 7 },
    survivors: [{ id: '33333333-4444', file: 'disk-000003.delta' }],
    progress: 0,
    started: '2024-01-01T00:00:00.000Z',
  };
}


const check = (patch: Record<string, unknown>) => codeOfSync(() => decodeOpState(withChecksum({ ...valid(), ...patch })));

const idArb = fc.uuid().map((u) => u.toLowerCase());
const fileArb = fc.stringMatching(/^[a-z0-9._-]{1,40}$/).filter((f) => f !== '.' && f !== '..');
const stateArb: fc.Arbitrary<MergeState> = fc.record({
  op: fc.constant('merge' as const),
  diskId: idArb,
  direction: fc.constantFrom('stream' as const, 'commit' as const),
  removed: fc.record({ id: idArb, file: fileArb, generation: fc.maxSafeNat() }),
  survivors: fc.array(fc.record({ id: idArb, file: fileArb }), { minLength: 1, maxLength: 4 }),
  progress: fc.maxSafeNat(),
  started: fc.string({ maxLength: 64 }),
}).map((s) => (s.direction === 'commit' ? { ...s, survivors: s.survivors.slice(0, 1) } : s));

describe('operation state round trip', () => {
  it('decodes what it encodes', () => {
    fc.assert(
      fc.property(stateArb, (s) => {
        expect(decodeOpState(encodeOpState(s).toString('utf8'))).toEqual(s);
      }),
      { numRuns: propertyRuns(200) },
    );
  });

  it('uses the documented checksum recipe', () => {
    expect(check({})).toBe('ok');
  });

  it('a field changed without a new checksum is CHECKSUM_MISMATCH', () => {
    const good = JSON.parse(withChecksum(valid())) as Record<string, unknown>;
    expect(codeOfSync(() => decodeOpState(JSON.stringify({ ...good, progress: 100 })))).toBe('CHECKSUM_MISMATCH');
    expect(codeOfSync(() => decodeOpState(JSON.stringify({ ...good, direction: 'commit' })))).toBe('CHECKSUM_MISMATCH');
  });
});

describe('operation state validation: one rule each (STATE_MISMATCH: never resumed)', () => {
  it('text that is not JSON', () => {
    expect(codeOfSync(() => decodeOpState('{'))).toBe('STATE_MISMATCH');
  });

  it('JSON that is not an object', () => {
    expect(codeOfSync(() => decodeOpState('null'))).toBe('STATE_MISMATCH');
    expect(codeOfSync(() => decodeOpState('3'))).toBe('STATE_MISMATCH');
  });

  it('another format', () => {
    expect(check({ format: 'deltadisk-chain' })).toBe('STATE_MISMATCH');
  });

  it('another version', () => {
    expect(check({ version: 2 })).toBe('UNSUPPORTED_VERSION');
  });

  it('an unknown operation', () => {
    expect(check({ op: 'compact' })).toBe('STATE_MISMATCH');
  });

  it('an invalid disk id', () => {
    expect(check({ diskId: 'XYZ' })).toBe('STATE_MISMATCH');
  });

  it('an invalid direction', () => {
    expect(check({ direction: 'sideways' })).toBe('STATE_MISMATCH');
  });

  it('an invalid removed layer', () => {
    const r = valid().removed as Record<string, unknown>;
    expect(check({ removed: null })).toBe('STATE_MISMATCH');
    expect(check({ removed: { ...r, id: 'no' } })).toBe('STATE_MISMATCH');
    expect(check({ removed: { ...r, file: '../x' } })).toBe('STATE_MISMATCH');
    expect(check({ removed: { ...r, file: '..' } })).toBe('STATE_MISMATCH');
    expect(check({ removed: { ...r, generation: -1 } })).toBe('STATE_MISMATCH');
  });

  it('an invalid survivor layer', () => {
    const s = (valid().survivors as Record<string, unknown>[])[0]!;
    expect(check({ survivors: 'x' })).toBe('STATE_MISMATCH');
    expect(check({ survivors: [] })).toBe('STATE_MISMATCH');
    expect(check({ survivors: [{ ...s, file: 'a/b' }] })).toBe('STATE_MISMATCH');
    expect(check({ survivors: [{ ...s, file: '' }] })).toBe('STATE_MISMATCH');
    expect(check({ direction: 'commit', survivors: [s, s] })).toBe('STATE_MISMATCH');
  });

  it('an invalid progress mark', () => {
    expect(check({ progress: -1 })).toBe('STATE_MISMATCH');
    expect(check({ progress: 0.5 })).toBe('STATE_MISMATCH');
  });

  it('an invalid start time', () => {
    expect(check({ started: 'x'.repeat(65) })).toBe('STATE_MISMATCH');
  });
});
