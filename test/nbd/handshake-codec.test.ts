/**
 * The handshake codec against doc/proto.md's byte layouts: round trips of every
 * message, exact bytes where the specification fixes them, and hostile inputs
 * (lengths pointing past the end, bad UTF-8, NULs, duplicates) refused with
 * PROTOCOL_ERROR and nothing else.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DeltaDiskError } from '../../lib/errors.js';
import { Info, Opt, Rep } from '../../lib/nbd/constants.js';
import {
  decodeClientFlags,
  decodeGreeting,
  decodeInfoReply,
  decodeInfoRequest,
  decodeMetaContextReply,
  decodeMetaContextRequest,
  decodeOptionHeader,
  decodeOptionReplyHeader,
  decodeServerReply,
  encodeClientFlags,
  encodeExportNameReply,
  encodeGreeting,
  encodeInfoBlockSize,
  encodeInfoDescription,
  encodeInfoExport,
  encodeInfoName,
  encodeInfoRequest,
  encodeMetaContextReply,
  encodeMetaContextRequest,
  encodeOption,
  encodeOptionError,
  encodeOptionReply,
  encodeServerReply,
} from '../../lib/nbd/handshake-codec.js';
import { propertyRuns } from '../helpers/temp-dir.js';

function protocolError(fn: () => unknown): void {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(DeltaDiskError);
    expect((err as DeltaDiskError).code).toBe('PROTOCOL_ERROR');
    return;
  }
  expect.fail('expected PROTOCOL_ERROR');
}

const name = fc.string({ unit: 'grapheme', maxLength: 40 }).filter((s) => !s.includes('\0'));

describe('greeting and flags', () => {
  it('sends NBDMAGIC, IHAVEOPT and the handshake flags, big-endian', () => {
    expect(encodeGreeting(3).toString('hex')).toBe('4e42444d41474943' + '49484156454f5054' + '0003');
    expect(decodeGreeting(encodeGreeting(1))).toBe(1);
  });

  it('refuses an oldstyle or garbage greeting', () => {
    const old = Buffer.alloc(18);
    Buffer.from('NBDMAGIC').copy(old);
    old.writeBigUInt64BE(0x00420281861253n, 8);
    protocolError(() => decodeGreeting(old));
    protocolError(() => decodeGreeting(Buffer.alloc(17)));
  });

  it('round-trips client flags', () => {
    expect(decodeClientFlags(encodeClientFlags(0xffffffff))).toBe(0xffffffff);
    protocolError(() => decodeClientFlags(Buffer.alloc(3)));
  });

  it('pads the EXPORT_NAME reply with 124 zeroes unless NO_ZEROES', () => {
    const full = encodeExportNameReply(2 ** 40, 0x1234, false);
    expect(full.length).toBe(134);
    expect(full.readBigUInt64BE(0)).toBe(2n ** 40n);
    expect(full.readUInt16BE(8)).toBe(0x1234);
    expect(full.subarray(10).every((b) => b === 0)).toBe(true);
    expect(encodeExportNameReply(1, 1, true).length).toBe(10);
  });
});

describe('options and replies', () => {
  it('frames an option as IHAVEOPT, option, length, data', () => {
    const b = encodeOption(Opt.GO, Buffer.from('abc'));
    expect(b.subarray(0, 8).toString('ascii')).toBe('IHAVEOPT');
    expect(decodeOptionHeader(b.subarray(0, 16))).toEqual({ option: Opt.GO, length: 3 });
    const bad = Buffer.from(b.subarray(0, 16));
    bad[0] = 0;
    protocolError(() => decodeOptionHeader(bad));
  });

  it('frames a reply with the reply magic 0x3e889045565a9', () => {
    const b = encodeOptionReply(Opt.LIST, Rep.SERVER, Buffer.from('xy'));
    expect(b.readBigUInt64BE(0)).toBe(0x3e889045565a9n);
    expect(decodeOptionReplyHeader(b.subarray(0, 20))).toEqual({ option: Opt.LIST, type: Rep.SERVER, length: 2 });
  });

  it('cuts error messages at 4096 bytes on a character boundary', () => {
    const b = encodeOptionError(Opt.GO, Rep.ERR_UNKNOWN, '€'.repeat(3000));
    const len = b.readUInt32BE(16);
    expect(len).toBeLessThanOrEqual(4096);
    expect(len % 3).toBe(0);
    expect(b.subarray(20).toString('utf8')).toBe('€'.repeat(len / 3));
  });
});

describe('NBD_OPT_INFO / NBD_OPT_GO data', () => {
  it('round-trips any name and request list', () => {
    fc.assert(
      fc.property(name, fc.uniqueArray(fc.integer({ min: 0, max: 0xffff }), { maxLength: 8 }), (n, requests) => {
        expect(decodeInfoRequest(encodeInfoRequest({ name: n, requests }))).toEqual({ name: n, requests });
      }),
      { numRuns: propertyRuns(200) },
    );
  });

  it('refuses a name length past the end, trailing bytes, duplicates, bad UTF-8 and NUL', () => {
    const ok = encodeInfoRequest({ name: 'disk', requests: [Info.NAME] });
    const long = Buffer.from(ok);
    long.writeUInt32BE(0xffffffff, 0);
    protocolError(() => decodeInfoRequest(long));
    protocolError(() => decodeInfoRequest(Buffer.concat([ok, Buffer.alloc(1)])));
    protocolError(() => decodeInfoRequest(ok.subarray(0, 5)));
    protocolError(() => decodeInfoRequest(encodeInfoRequest({ name: 'd', requests: [3, 3] })));
    const utf = Buffer.from(ok);
    utf[4] = 0xff;
    protocolError(() => decodeInfoRequest(utf));
    const nul = Buffer.from(ok);
    nul[5] = 0;
    protocolError(() => decodeInfoRequest(nul));
  });

  it('encodes the information replies with the lengths the specification fixes', () => {
    const e = encodeInfoExport(123456789, 0x5);
    expect(e.length).toBe(12);
    expect(decodeInfoReply(e)).toEqual({ type: 'export', size: 123456789, flags: 5 });
    expect(encodeInfoBlockSize({ minimum: 1, preferred: 4096, maximum: 1 << 25 }).length).toBe(14);
    expect(decodeInfoReply(encodeInfoBlockSize({ minimum: 1, preferred: 4096, maximum: 1 << 25 }))).toEqual({
      type: 'block-size',
      sizes: { minimum: 1, preferred: 4096, maximum: 1 << 25 },
    });
    expect(decodeInfoReply(encodeInfoName('snap 1'))).toEqual({ type: 'name', name: 'snap 1' });
    expect(decodeInfoReply(encodeInfoDescription('a disk'))).toEqual({ type: 'description', text: 'a disk' });
    expect(decodeInfoReply(Buffer.from([0, 99, 1]))).toEqual({ type: 'unknown', info: 99 });
    protocolError(() => decodeInfoReply(Buffer.from([0, 0, 1])));
  });
});

describe('NBD_OPT_LIST replies', () => {
  it('round-trips name and description', () => {
    expect(decodeServerReply(encodeServerReply('s1', 'snapshot'))).toEqual({ name: 's1', description: 'snapshot' });
    const bad = encodeServerReply('s1');
    bad.writeUInt32BE(3, 0);
    protocolError(() => decodeServerReply(bad));
  });
});

describe('metadata context options', () => {
  it('round-trips export name and queries', () => {
    fc.assert(
      fc.property(name, fc.array(name, { maxLength: 10 }), (n, queries) => {
        expect(decodeMetaContextRequest(encodeMetaContextRequest({ name: n, queries }))).toEqual({ name: n, queries });
      }),
      { numRuns: propertyRuns(200) },
    );
  });

  it('refuses a query length past the end, a count it cannot hold, more than 64 queries, trailing bytes', () => {
    const ok = encodeMetaContextRequest({ name: 'd', queries: ['base:allocation'] });
    const past = Buffer.from(ok);
    past.writeUInt32BE(1000, 9);
    protocolError(() => decodeMetaContextRequest(past));
    const count = Buffer.from(ok);
    count.writeUInt32BE(2, 5);
    protocolError(() => decodeMetaContextRequest(count));
    protocolError(() => decodeMetaContextRequest(encodeMetaContextRequest({ name: 'd', queries: Array(65).fill('base:') })));
    protocolError(() => decodeMetaContextRequest(Buffer.concat([ok, Buffer.from([0])])));
    protocolError(() => decodeMetaContextRequest(Buffer.alloc(3)));
  });

  it('round-trips a context reply', () => {
    expect(decodeMetaContextReply(encodeMetaContextReply(7, 'base:allocation'))).toEqual({ id: 7, name: 'base:allocation' });
  });
});

describe('decoders on arbitrary bytes', () => {
  it('either decode or throw PROTOCOL_ERROR, nothing else', () => {
    const decoders = [decodeInfoRequest, decodeMetaContextRequest, decodeInfoReply, decodeServerReply, decodeMetaContextReply];
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), fc.integer({ min: 0, max: decoders.length - 1 }), (bytes, i) => {
        try {
          decoders[i]!(Buffer.from(bytes));
        } catch (err) {
          expect((err as DeltaDiskError).code).toBe('PROTOCOL_ERROR');
        }
      }),
      { numRuns: propertyRuns(500) },
    );
  });
});
