/**
 * The `base:allocation` metadata context: which parts of an export are holes that
 * read as zeros, computed for a range from a per-block status. Pure.
 *
 * The descriptors cover the request from its first byte, never reach past its end
 * (so REQ_ONE needs no special clipping), merge neighbouring blocks of the same
 * status, and stop early after `maxDescriptors` or `maxBlocks` (the protocol lets a
 * server answer part of a range; clients ask again from where it ended), which
 * bounds the work and the reply size of one request.
 */
import type { StatusDescriptor } from './transmission-codec.js';

export interface AllocationQuery {
  readonly offset: number;
  /** Bytes asked about, > 0; offset + length within the export. */
  readonly length: number;
  readonly blockSize: number;
  /** NBD_STATE_* flags of one block. */
  readonly flagsOf: (block: number) => number;
  /** Only one descriptor (NBD_CMD_FLAG_REQ_ONE). */
  readonly reqOne?: boolean;
  readonly maxDescriptors?: number;
  readonly maxBlocks?: number;
}

export const DEFAULT_MAX_DESCRIPTORS = 8192;
export const DEFAULT_MAX_BLOCKS = 1 << 18;

export function allocationDescriptors(q: AllocationQuery): StatusDescriptor[] {
  const maxDescriptors = q.reqOne ? 1 : (q.maxDescriptors ?? DEFAULT_MAX_DESCRIPTORS);
  const maxBlocks = q.maxBlocks ?? DEFAULT_MAX_BLOCKS;
  const end = q.offset + q.length;
  const out: StatusDescriptor[] = [];
  let runStart = q.offset;
  let runFlags = -1;
  let pos = q.offset;
  let scanned = 0;
  while (pos < end && scanned < maxBlocks) {
    const block = Math.floor(pos / q.blockSize);
    const blockEnd = Math.min(end, (block + 1) * q.blockSize);
    const flags = q.flagsOf(block);
    scanned++;
    if (flags !== runFlags && runFlags !== -1) {
      out.push({ length: pos - runStart, flags: runFlags });
      if (out.length >= maxDescriptors) return out;
      runStart = pos;
    }
    runFlags = flags;
    pos = blockEnd;
  }
  out.push({ length: pos - runStart, flags: runFlags });
  return out;
}
