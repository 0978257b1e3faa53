/**
 * Regression: resuming a merge trusted the progress mark of its state record. A
 * mark past the disk's last block (2^31, say: the record's checksum holds only if
 * it was written that way, by a bug or by hand) made the resumed copy skip every
 * block, and the switch then dropped the removed layer's data silently. Resuming
 * now refuses such a record with STATE_MISMATCH. Found by
 * test/chain/hostile-input.test.ts (crash state of a stream merge before any block
 * was copied).
 */
import { describe, expect, it } from 'vitest';
import { mergeFixture, runVariant } from '../harness/chain-hostile.js';
import { opStateMutations } from '../harness/chain-metadata-mutations.js';

describe('regression: a merge state record whose progress mark lies past the last block', () => {
  it('is refused instead of skipping the copy', async () => {
    const fx = await mergeFixture('before copy');
    const variants = [...opStateMutations(fx)].filter((v) => /progress (= 2\^31|= 2\^32|past the last block)$/.test(v.mutation));
    expect(variants).toHaveLength(3);
    for (const v of variants) {
      const [readOnly, writable] = await runVariant(fx, v);
      // Read-only opens do not resume merges, so they read the model's data.
      expect(readOnly, v.mutation).toBe('identical to the model');
      expect(writable, v.mutation).toBe('typed error STATE_MISMATCH');
    }
  });
});
