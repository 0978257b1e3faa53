/**
 * The control protocol codec (version 1): line framing with a hard length cap,
 * strict request decoding, versioned hello, and change maps as runs.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  LineSplitter,
  decodeHello,
  decodeReply,
  decodeRequest,
  encodeLine,
  fromRuns,
  toRuns,
} from '../../lib/nbd/control-protocol.js';
import { propertyRuns } from '../helpers/temp-dir.js';

function code(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    return (err as { code?: string }).code;
  }
  return undefined;
}

const hello = { protocol: 'deltadisk-control', version: 1, pid: 1, disk: '/d.chain', exportName: '', readOnly: false, virtualSize: 4096, blockSize: 4096, uri: 'nbd://x/' };

describe('control protocol', () => {
  it('splits lines across any chunking and refuses an over-long line', () => {
    fc.assert(
      fc.property(fc.array(fc.string({ maxLength: 20 }).map((x) => x.replaceAll('\n', '')), { maxLength: 10 }), fc.array(fc.nat({ max: 30 }), { maxLength: 10 }), (lines, cuts) => {
        const bytes = Buffer.from(lines.map((l) => `${l}\n`).join(''));
        const sp = new LineSplitter(1000);
        const got: string[] = [];
        let at = 0;
        for (const c of cuts) {
          got.push(...sp.push(bytes.subarray(at, Math.min(bytes.length, at + c))));
          at = Math.min(bytes.length, at + c);
        }
        got.push(...sp.push(bytes.subarray(at)));
        expect(got).toEqual(lines);
      }),
      { numRuns: propertyRuns(200) },
    );
    const sp = new LineSplitter(10);
    expect(code(() => sp.push(Buffer.alloc(11, 0x61)))).toBe('PROTOCOL_ERROR');
    expect(code(() => new LineSplitter(10).push(Buffer.from('0123456789abc\n')))).toBe('PROTOCOL_ERROR');
  });

  it('decodes the requests of version 1 and refuses anything else', () => {
    expect(decodeRequest(encodeLine({ id: 3, op: 'snapshot', name: 'n' }).trim())).toEqual({ id: 3, op: 'snapshot', name: 'n', description: '' });
    expect(decodeRequest('{"id":1,"op":"changed-blocks","from":"a"}')).toEqual({ id: 1, op: 'changed-blocks', from: 'a', to: null });
    expect(decodeRequest('{"id":1,"op":"delete","name":"x"}')).toEqual({ id: 1, op: 'delete', name: 'x' });
    for (const bad of ['', 'null', '[]', '{"op":"list"}', '{"id":1.5,"op":"list"}', '{"id":1,"op":"revert"}', '{"id":1,"op":"snapshot"}', '{"id":1,"op":"delete","name":5}']) {
      expect(code(() => decodeRequest(bad))).toBe('PROTOCOL_ERROR');
    }
  });

  it('checks the hello: protocol name, version, geometry', () => {
    expect(decodeHello(JSON.stringify(hello))).toEqual(hello);
    expect(code(() => decodeHello(JSON.stringify({ ...hello, version: 2 })))).toBe('UNSUPPORTED_VERSION');
    expect(code(() => decodeHello(JSON.stringify({ ...hello, protocol: 'x' })))).toBe('PROTOCOL_ERROR');
    expect(code(() => decodeHello(JSON.stringify({ ...hello, blockSize: 0 })))).toBe('PROTOCOL_ERROR');
  });

  it('decodes replies; an unknown error code from a newer server becomes IO_ERROR', () => {
    expect(decodeReply('{"id":1,"ok":true,"result":[1]}')).toEqual({ id: 1, ok: true, result: [1] });
    expect(decodeReply('{"id":2,"ok":false,"error":{"code":"SNAPSHOT_EXISTS","message":"m"}}')).toEqual({ id: 2, ok: false, error: { code: 'SNAPSHOT_EXISTS', message: 'm' } });
    expect(decodeReply('{"id":2,"ok":false,"error":{"code":"NEW_CODE","message":"m"}}')).toMatchObject({ error: { code: 'IO_ERROR' } });
    expect(code(() => decodeReply('{"id":2,"ok":"maybe"}'))).toBe('PROTOCOL_ERROR');
  });

  it('round-trips change maps as runs and refuses unordered, overlapping or oversized ones', () => {
    fc.assert(
      fc.property(fc.uniqueArray(fc.nat({ max: 500 }), { maxLength: 100 }), (set) => {
        const blocks = [...set].sort((a, b) => a - b);
        expect(fromRuns(toRuns(blocks), 501)).toEqual(blocks);
      }),
      { numRuns: propertyRuns(200) },
    );
    expect(toRuns([1, 2, 3, 7, 9, 10])).toEqual([[1, 3], [7, 1], [9, 2]]);
    for (const bad of [[[5, 1], [2, 1]], [[1, 3], [2, 1]], [[0, 0]], [[0, 1e9]], 'x', [[1]]]) {
      expect(code(() => fromRuns(bad, 1000))).toBe('PROTOCOL_ERROR');
    }
  });
});
