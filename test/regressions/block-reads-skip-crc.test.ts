/**
 * Known gap, left failing on purpose (it.fails): every DATA and BLOB block has a
 * CRC-32 in its layer's map segment (and its record's payload CRC), but reads of
 * indexed blocks never check it. So
 *  - a bit flipped in stored block data (bit rot, a misdirected write) is served
 *    to the reader as if it were the data, and
 *  - a map segment whose DATA entry points at another record's bytes (possible only
 *    with its checksum recomputed, i.e. a hostile or buggy writer) serves metadata
 *    as block content,
 * instead of ending in CHECKSUM_MISMATCH. The CRCs are on hand in the record table
 * (RecordTable.crc); checking them costs one crc32 per block read (zlib's is
 * hardware-assisted). Whether to verify on every read or only in `check` is the
 * lead's call (issue 4: a damaged block must end in a typed error); when reads
 * verify, drop `.fails` here and the known-gap marks in chain-hostile.ts.
 *
 * Found by test/chain/hostile-input.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { indexedDataFlips, segmentMutations } from '../harness/chain-delta-mutations.js';
import { richFixture, runVariant, type Variant } from '../harness/chain-hostile.js';
import { Rng } from '../harness/rng.js';

describe('regression: damaged block data must not be served', () => {
  it.fails('ends in a typed error when indexed block data or its map entry is damaged', async () => {
    const fx = await richFixture();
    const variants: Variant[] = [
      ...indexedDataFlips(fx, 5, new Rng(1)),
      ...[...segmentMutations(fx)].filter((v) => v.mutation.endsWith('offsets all the same (overlapping data)')),
    ];
    for (const v of variants) {
      const strict: Variant = { structure: v.structure, mutation: v.mutation, inTail: v.inTail, make: v.make };
      const endings = await runVariant(fx, strict);
      for (const e of endings) expect(e, v.mutation).toMatch(/^typed error|^identical/);
    }
  });
});
