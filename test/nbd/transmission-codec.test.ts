/**
 * The transmission codec against doc/proto.md: request and reply layouts byte for
 * byte, 64-bit offsets kept exact, chunk payload rules enforced on decode.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { DeltaDiskError } from '../../lib/errors.js';
import { Cmd, REPLY_FLAG_DONE, ReplyType } from '../../lib/nbd/constants.js';
import {
  decodeBlockStatus,
  decodeChunkHeader,
  decodeDataOffset,
  decodeErrorPayload,
  decodeOffsetHole,
  decodeRequest,
  decodeSimpleReply,
  encodeBlockStatusChunk,
  encodeErrorChunk,
  encodeHoleChunk,
  encodeNoneChunk,
  encodeOffsetDataHeader,
  encodeRequest,
  encodeSimpleReply,
} from '../../lib/nbd/transmission-codec.js';
import { propertyRuns } from '../helpers/temp-dir.js';

const u64 = fc.bigInt({ min: 0n, max: 2n ** 64n - 1n });

function code(fn: () => unknown): string | undefined {
  try {
    fn();
    return undefined;
  } catch (err) {
    return (err as DeltaDiskError).code;
  }
}

describe('requests', () => {
  it('lay out magic, flags, type, handle, offset, length', () => {
    const b = encodeRequest({ flags: 1, type: Cmd.WRITE, handle: 0x0102030405060708n, offset: 2n ** 63n, length: 4096 });
    expect(b.toString('hex')).toBe('25609513' + '0001' + '0001' + '0102030405060708' + '8000000000000000' + '00001000');
  });

  it('round-trip every field exactly, including offsets beyond 2^53', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 0xffff }), fc.integer({ min: 0, max: 0xffff }), u64, u64, fc.integer({ min: 0, max: 0xffffffff }), (flags, type, handle, offset, length) => {
        expect(decodeRequest(encodeRequest({ flags, type, handle, offset, length }))).toEqual({ flags, type, handle, offset, length });
      }),
      { numRuns: propertyRuns(300) },
    );
  });

  it('refuse a wrong magic (including the historic one) and a short header', () => {
    const b = encodeRequest({ flags: 0, type: 0, handle: 1n, offset: 0n, length: 0 });
    b.writeUInt32BE(0x12560953, 0);
    expect(code(() => decodeRequest(b))).toBe('PROTOCOL_ERROR');
    expect(code(() => decodeRequest(Buffer.alloc(27)))).toBe('PROTOCOL_ERROR');
  });
});

describe('replies', () => {
  it('simple reply: magic 0x67446698, error, handle', () => {
    const b = encodeSimpleReply(22, 7n);
    expect(b.toString('hex')).toBe('67446698' + '00000016' + '0000000000000007');
    expect(decodeSimpleReply(b)).toEqual({ error: 22, handle: 7n });
  });

  it('NONE chunk: final, empty', () => {
    const h = decodeChunkHeader(encodeNoneChunk(9n));
    expect(h).toEqual({ flags: REPLY_FLAG_DONE, type: ReplyType.NONE, handle: 9n, length: 0 });
  });

  it('OFFSET_DATA: length counts the 8-byte offset', () => {
    const b = encodeOffsetDataHeader(3n, 2 ** 40, 512, true);
    expect(b.length).toBe(28);
    expect(decodeChunkHeader(b.subarray(0, 20))).toEqual({ flags: REPLY_FLAG_DONE, type: ReplyType.OFFSET_DATA, handle: 3n, length: 520 });
    expect(decodeDataOffset(Buffer.concat([b.subarray(20), Buffer.alloc(512)]))).toBe(2 ** 40);
    expect(code(() => encodeOffsetDataHeader(3n, 0, 0, true))).toBe('INVALID_ARGUMENT');
  });

  it('OFFSET_HOLE: 12-byte payload, nonzero size', () => {
    const b = encodeHoleChunk(1n, 4096, 8192, false);
    expect(decodeChunkHeader(b.subarray(0, 20)).length).toBe(12);
    expect(decodeOffsetHole(b.subarray(20))).toEqual({ offset: 4096, size: 8192 });
    const zero = Buffer.from(b.subarray(20));
    zero.writeUInt32BE(0, 8);
    expect(code(() => decodeOffsetHole(zero))).toBe('PROTOCOL_ERROR');
  });

  it('BLOCK_STATUS: context id then (length, flags) pairs; empty lists and zero lengths refused', () => {
    const b = encodeBlockStatusChunk(5n, 1, [{ length: 65536, flags: 3 }, { length: 4096, flags: 0 }], true);
    const h = decodeChunkHeader(b.subarray(0, 20));
    expect(h.length).toBe(4 + 16);
    expect(decodeBlockStatus(b.subarray(20))).toEqual({ contextId: 1, extents: [{ length: 65536, flags: 3 }, { length: 4096, flags: 0 }] });
    expect(code(() => encodeBlockStatusChunk(5n, 1, [], true))).toBe('INVALID_ARGUMENT');
    expect(code(() => decodeBlockStatus(Buffer.alloc(4)))).toBe('PROTOCOL_ERROR');
    expect(code(() => decodeBlockStatus(Buffer.alloc(12)))).toBe('PROTOCOL_ERROR');
    expect(code(() => decodeBlockStatus(Buffer.alloc(13)))).toBe('PROTOCOL_ERROR');
  });

  it('ERROR: errno, message length, message; always final', () => {
    const b = encodeErrorChunk(2n, 1, 'read-only');
    const h = decodeChunkHeader(b.subarray(0, 20));
    expect(h).toEqual({ flags: REPLY_FLAG_DONE, type: ReplyType.ERROR, handle: 2n, length: 6 + 9 });
    expect(decodeErrorPayload(ReplyType.ERROR, b.subarray(20))).toEqual({ error: 1, message: 'read-only', offset: undefined });
    expect(code(() => encodeErrorChunk(2n, 0, 'x'))).toBe('INVALID_ARGUMENT');
    const lying = Buffer.from(b.subarray(20));
    lying.writeUInt16BE(100, 4);
    expect(code(() => decodeErrorPayload(ReplyType.ERROR, lying))).toBe('PROTOCOL_ERROR');
  });

  it('ERROR_OFFSET carries the offset after the message', () => {
    const p = Buffer.alloc(6 + 2 + 8);
    p.writeUInt32BE(5, 0);
    p.writeUInt16BE(2, 4);
    p.write('io', 6);
    p.writeBigUInt64BE(1234n, 8);
    expect(decodeErrorPayload(ReplyType.ERROR_OFFSET, p)).toEqual({ error: 5, message: 'io', offset: 1234 });
    expect(code(() => decodeErrorPayload(ReplyType.ERROR_OFFSET, p.subarray(0, 12)))).toBe('PROTOCOL_ERROR');
  });
});
