/**
 * Regression: a delta header whose `nextSeq` disagreed with its newest map segment
 * was accepted. The tail scan then found no record carrying the expected number,
 * took the whole unindexed tail (flushed, acknowledged writes) for a torn append
 * and dropped it; a writable open would have truncated it away for good. The header
 * checksum holds for such a header only if it was written that way (a bug or a
 * hostile file), so the open must refuse it with CHAIN_CORRUPT instead of
 * silently rolling the layer back. Found by test/chain/hostile-input.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { headerFieldMutations } from '../harness/chain-delta-mutations.js';
import { richFixture, runVariant, type Variant } from '../harness/chain-hostile.js';

describe('regression: a header whose next sequence number does not follow its segments', () => {
  it('is refused, not read as a layer without its tail', async () => {
    const fx = await richFixture();
    const variants = [...headerFieldMutations(fx)].filter((v: Variant) => v.mutation.startsWith(`${fx.active} `) && /nextSeq = (1|4|2\^31)$/.test(v.mutation));
    expect(variants.length).toBeGreaterThan(0);
    for (const v of variants) {
      expect(await runVariant(fx, v), v.mutation).toEqual(['typed error CHAIN_CORRUPT', 'typed error CHAIN_CORRUPT']);
    }
  });
});
