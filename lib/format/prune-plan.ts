/**
 * The prune plan (`plans/prune`): packs condemned by an unfinished prune.
 *
 * A frame (framed.ts, magic `DDPP\r\n\x1a\n`) with payload
 *
 *     { id, created, condemned: [bin 32 …], temps: [name …] }
 *
 * While it exists, backups never reuse a chunk stored only in a condemned pack, and
 * a prune deletes those packs only after every lock that was present once the plan
 * was durable is gone (a later lock holder read the plan), and after checking again
 * that no backup references them. `temps` are leftover temporary files found when
 * the plan was made, deleted on the same terms.
 */
import { decodeFramed, encodeFramed, Fields, HEX32 } from './framed.js';
import { HASH_SIZE, MAX_PLAN_BYTES } from './repo-limits.js';

export const PLAN_MAGIC = Buffer.from('DDPP\r\n\x1a\n', 'latin1');
const MAX_ITEMS = 1_000_000;

export interface PrunePlan {
  readonly id: string;
  readonly created: string;
  /** Hex names of the packs to delete. */
  readonly condemned: readonly string[];
  /** Temporary files (`<kind>/<name>`) to delete. */
  readonly temps: readonly string[];
}

export function encodePrunePlan(p: PrunePlan): Buffer {
  return encodeFramed(PLAN_MAGIC, {
    id: p.id,
    created: p.created,
    condemned: p.condemned.map((n) => Buffer.from(n, 'hex')),
    temps: p.temps,
  });
}

export function decodePrunePlan(bytes: Uint8Array, path?: string): PrunePlan {
  const v = decodeFramed(bytes, PLAN_MAGIC, 'prune plan', MAX_PLAN_BYTES, {
    maxStrLength: 1024,
    maxBinLength: HASH_SIZE,
    maxArrayLength: MAX_ITEMS,
    maxMapLength: 16,
  }, path);
  const f: Fields = new Fields(v, 'prune plan', path);
  const id = f.str('id', 32);
  if (!HEX32.test(id)) f.fail('id is invalid');
  const condemned = f.array('condemned', MAX_ITEMS).map((b) => {
    if (!(b instanceof Uint8Array) || b.length !== HASH_SIZE) f.fail('a condemned pack name is invalid');
    return Buffer.from(b).toString('hex');
  });
  return { id, created: f.str('created', 64), condemned, temps: f.strings('temps', MAX_ITEMS, 1024) };
}
