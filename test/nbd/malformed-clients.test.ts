/**
 * Bad clients, speaking raw bytes: each gets the reply doc/proto.md prescribes
 * (an option error, a request error, or a hard disconnect where the specification
 * calls for one), the server keeps serving everyone else, and no acknowledged
 * data is lost.
 */
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { NbdClient } from '../../lib/index.js';
import {
  Cmd,
  CMD_FLAG_DF,
  CMD_FLAG_FUA,
  CMD_FLAG_REQ_ONE,
  Err,
  FLAG_C_FIXED_NEWSTYLE,
  Info,
  Opt,
  Rep,
  ReplyType,
} from '../../lib/nbd/constants.js';
import { decodeInfoReply, decodeMetaContextReply, encodeInfoRequest, encodeMetaContextRequest, encodeOption } from '../../lib/nbd/handshake-codec.js';
import { decodeBlockStatus, decodeChunkHeader, decodeErrorPayload, decodeSimpleReply, encodeRequest } from '../../lib/nbd/transmission-codec.js';
import { RawClient, pattern, serveTempDisk, type Served } from '../helpers/nbd.js';
import { propertyRuns } from '../helpers/temp-dir.js';

let s: Served | undefined;
const raws: RawClient[] = [];

afterEach(async () => {
  for (const r of raws.splice(0)) r.destroy();
  await s?.close();
  s = undefined;
});

async function raw(): Promise<RawClient> {
  const r = await RawClient.handshake(s!.port);
  raws.push(r);
  return r;
}

/** The server still works for a well-behaved client. */
async function stillServes(): Promise<void> {
  const c = await NbdClient.connect({ host: '127.0.0.1', port: s!.port }, '');
  await c.write(0, Buffer.from('alive'));
  expect((await c.read(0, 5)).toString()).toBe('alive');
  await c.close();
}

function req(type: number, offset: bigint | number, length: number, flags = 0, handle = 1n): Buffer {
  return encodeRequest({ flags, type, handle, offset: BigInt(offset), length });
}

async function simpleError(r: RawClient): Promise<{ error: number; handle: bigint }> {
  return decodeSimpleReply(await r.read(16));
}

async function structuredError(r: RawClient): Promise<{ error: number; handle: bigint; type: number }> {
  const h = decodeChunkHeader(await r.read(20));
  const e = decodeErrorPayload(h.type, await r.read(h.length));
  return { error: e.error, handle: h.handle, type: h.type };
}

describe('handshake abuse', () => {
  it('drops a client that sets unknown client flags', async () => {
    s = await serveTempDisk();
    const r = await RawClient.handshake(s.port, FLAG_C_FIXED_NEWSTYLE | 0x80);
    raws.push(r);
    expect(await r.closedWithin()).toBe(true);
    await stillServes();
  });

  it('drops a client whose option lacks the IHAVEOPT magic', async () => {
    s = await serveTempDisk();
    const r = await raw();
    r.send(Buffer.alloc(16, 0x41));
    expect(await r.closedWithin()).toBe(true);
    await stillServes();
  });

  it('answers unknown options with ERR_UNSUP and STARTTLS with an error, and stays in step', async () => {
    s = await serveTempDisk();
    const r = await raw();
    expect((await r.option(999, Buffer.from('whatever data')))[0]!.type).toBe(Rep.ERR_UNSUP);
    expect((await r.option(Opt.STARTTLS))[0]!.type).toBe(Rep.ERR_UNSUP);
    expect((await r.option(Opt.STARTTLS, Buffer.from('x')))[0]!.type).toBe(Rep.ERR_INVALID);
    await r.go('');
  });

  it('refuses option data over 64 KiB with ERR_TOO_BIG without buffering it, then continues', async () => {
    s = await serveTempDisk();
    const r = await raw();
    r.send(encodeOption(Opt.GO, Buffer.alloc(200_000, 1)));
    const rep = await r.replies(Opt.GO);
    expect(rep[0]!.type).toBe(Rep.ERR_TOO_BIG);
    await r.go('');
  });

  it('refuses malformed INFO/GO, LIST with data, and metadata contexts before structured replies', async () => {
    s = await serveTempDisk();
    const r = await raw();
    expect((await r.option(Opt.GO, Buffer.from([0, 0, 0, 9, 0, 0])))[0]!.type).toBe(Rep.ERR_INVALID);
    expect((await r.option(Opt.INFO, encodeInfoRequest({ name: '', requests: [Info.NAME, Info.NAME] })))[0]!.type).toBe(Rep.ERR_INVALID);
    expect((await r.option(Opt.LIST, Buffer.from('x')))[0]!.type).toBe(Rep.ERR_INVALID);
    expect((await r.option(Opt.STRUCTURED_REPLY, Buffer.from('x')))[0]!.type).toBe(Rep.ERR_INVALID);
    const meta = encodeMetaContextRequest({ name: '', queries: ['base:allocation'] });
    expect((await r.option(Opt.SET_META_CONTEXT, meta))[0]!.type).toBe(Rep.ERR_INVALID);
    expect((await r.option(Opt.GO, encodeInfoRequest({ name: 'nope', requests: [] })))[0]!.type).toBe(Rep.ERR_UNKNOWN);
    await r.go('');
  });

  it('answers NBD_OPT_ABORT with an ACK and closes', async () => {
    s = await serveTempDisk();
    const r = await raw();
    expect((await r.option(Opt.ABORT))[0]!.type).toBe(Rep.ACK);
    expect(await r.closedWithin()).toBe(true);
  });

  it('hangs up on EXPORT_NAME of an export that does not exist (it cannot answer with an error)', async () => {
    s = await serveTempDisk();
    const r = await raw();
    r.send(encodeOption(Opt.EXPORT_NAME, Buffer.from('missing')));
    expect(await r.closedWithin()).toBe(true);
    await stillServes();
  });

  it('hangs up on a client that never stops haggling', async () => {
    s = await serveTempDisk();
    const r = await raw();
    for (let i = 0; i < 300; i++) r.send(encodeOption(Opt.LIST));
    expect(await r.closedWithin()).toBe(true);
    await stillServes();
  });

  it('hangs up on a client that does not finish the handshake in time', async () => {
    s = await serveTempDisk({ serve: { handshakeTimeoutMs: 200 } });
    const r = await RawClient.connect(s.port);
    raws.push(r);
    expect(await r.closedWithin(3000)).toBe(true);
    await stillServes();
  });

  it('survives clients that vanish at every point of the handshake', async () => {
    s = await serveTempDisk();
    for (let cut = 0; cut < 40; cut += 3) {
      const r = await RawClient.connect(s.port);
      await r.read(18);
      const bytes = Buffer.concat([Buffer.from([0, 0, 0, 1]), encodeOption(Opt.GO, encodeInfoRequest({ name: '', requests: [] }))]);
      r.send(bytes.subarray(0, cut));
      r.destroy();
    }
    await stillServes();
  });
});

describe('handshake as the specification words it', () => {
  it('answers EXPORT_NAME with size, flags and 124 zeroes, or none with NO_ZEROES', async () => {
    s = await serveTempDisk({ size: 3 * 4096 + 5 });
    const plain = await raw();
    plain.send(encodeOption(Opt.EXPORT_NAME, Buffer.alloc(0)));
    const reply = await plain.read(134);
    expect(reply.readBigUInt64BE(0)).toBe(3n * 4096n + 5n);
    expect(reply.readUInt16BE(8) & 1).toBe(1); // HAS_FLAGS
    expect(reply.subarray(10).every((b) => b === 0)).toBe(true);
    plain.send(req(Cmd.READ, 0, 4, 0, 1n));
    expect(await simpleError(plain)).toEqual({ error: 0, handle: 1n });
    const nz = await RawClient.handshake(s.port, FLAG_C_FIXED_NEWSTYLE | 2);
    raws.push(nz);
    nz.send(encodeOption(Opt.EXPORT_NAME, Buffer.alloc(0)));
    await nz.read(10);
    nz.send(req(Cmd.READ, 0, 4, 0, 2n));
    expect(await simpleError(nz)).toEqual({ error: 0, handle: 2n });
  });

  it('answers INFO with EXPORT, NAME (canonical name of the default export), DESCRIPTION and BLOCK_SIZE', async () => {
    s = await serveTempDisk({ size: 1 << 20, serve: { exportName: 'vm' } });
    const r = await raw();
    const replies = await r.option(Opt.INFO, encodeInfoRequest({ name: '', requests: [Info.DESCRIPTION] }));
    expect(replies[replies.length - 1]!.type).toBe(Rep.ACK);
    const infos = replies.slice(0, -1).map((x) => {
      expect(x.type).toBe(Rep.INFO);
      return decodeInfoReply(x.data);
    });
    expect(infos).toContainEqual({ type: 'export', size: 1 << 20, flags: expect.any(Number) as number });
    expect(infos).toContainEqual({ type: 'name', name: 'vm' });
    expect(infos).toContainEqual({ type: 'block-size', sizes: { minimum: 1, preferred: 4096, maximum: 32 * 1024 * 1024 } });
    expect(infos.some((i) => i.type === 'description')).toBe(true);
    // INFO does not end the handshake: GO still follows.
    await r.go('vm');
  });

  it('lists and selects base:allocation as the metadata context rules say', async () => {
    s = await serveTempDisk();
    const r = await raw();
    await r.option(Opt.STRUCTURED_REPLY);
    const list = async (queries: string[]): Promise<string[]> => {
      const reps = await r.option(Opt.LIST_META_CONTEXT, encodeMetaContextRequest({ name: '', queries }));
      expect(reps[reps.length - 1]!.type).toBe(Rep.ACK);
      return reps.slice(0, -1).map((x) => decodeMetaContextReply(x.data).name);
    };
    expect(await list([])).toEqual(['base:allocation']);
    expect(await list(['base:'])).toEqual(['base:allocation']);
    expect(await list(['qemu:dirty-bitmap:x', 'base:nothing'])).toEqual([]);
    expect((await r.option(Opt.LIST_META_CONTEXT, encodeMetaContextRequest({ name: '', queries: ['nocolon'] })))[0]!.type).toBe(Rep.ERR_INVALID);
    expect((await r.option(Opt.LIST_META_CONTEXT, encodeMetaContextRequest({ name: 'nope', queries: [] })))[0]!.type).toBe(Rep.ERR_UNKNOWN);
    // "base:" selects nothing in SET; a later SET replaces an earlier one.
    const set = async (queries: string[]): Promise<{ type: number; data: Buffer }[]> => r.option(Opt.SET_META_CONTEXT, encodeMetaContextRequest({ name: '', queries }));
    expect((await set(['base:'])).map((x) => x.type)).toEqual([Rep.ACK]);
    const chosen = await set(['base:allocation', 'x-other:thing']);
    expect(chosen.map((x) => x.type)).toEqual([Rep.META_CONTEXT, Rep.ACK]);
    const id = decodeMetaContextReply(chosen[0]!.data).id;
    await r.go('');
    r.send(req(Cmd.BLOCK_STATUS, 0, 4096, 0, 1n));
    const h = decodeChunkHeader(await r.read(20));
    expect(h).toMatchObject({ type: ReplyType.BLOCK_STATUS, handle: 1n, flags: 1 });
    expect(decodeBlockStatus(await r.read(h.length))).toEqual({ contextId: id, extents: [{ length: 4096, flags: 3 }] });
  });

  it('does not enable block status when the context was selected for another export', async () => {
    s = await serveTempDisk({ prepare: async (d) => void (await d.snapshot('other')) });
    const r = await raw();
    await r.option(Opt.STRUCTURED_REPLY);
    await r.option(Opt.SET_META_CONTEXT, encodeMetaContextRequest({ name: 'other', queries: ['base:allocation'] }));
    await r.go('');
    r.send(req(Cmd.BLOCK_STATUS, 0, 4096, 0, 1n));
    expect((await structuredError(r)).error).toBe(Err.EINVAL);
  });

  it('refuses options with ERR_SHUTDOWN while the server stops, then closes', async () => {
    s = await serveTempDisk();
    const r = await raw();
    const closing = s.served.close();
    expect((await r.option(Opt.LIST))[0]!.type).toBe(Rep.ERR_SHUTDOWN);
    expect(await r.closedWithin(5000)).toBe(true);
    await closing;
  });

  it('closes connections beyond maxConnections before the greeting', async () => {
    s = await serveTempDisk({ serve: { maxConnections: 2 } });
    const a = await raw();
    const b = await raw();
    const c = await RawClient.connect(s.port);
    raws.push(c);
    expect(await c.closedWithin()).toBe(true);
    a.destroy();
    b.destroy();
    await new Promise((res) => setTimeout(res, 100));
    await stillServes();
  });
});

describe('transmission abuse', () => {
  it('answers reads past the end with EINVAL and writes past the end with ENOSPC, skipping the payload', async () => {
    s = await serveTempDisk({ size: 1024 * 1024 });
    const r = await raw();
    await r.go('');
    r.send(req(Cmd.READ, 1024 * 1024 - 10, 20, 0, 1n));
    expect(await simpleError(r)).toEqual({ error: Err.EINVAL, handle: 1n });
    r.send(req(Cmd.READ, 2n ** 64n - 1n, 1, 0, 2n));
    expect(await simpleError(r)).toEqual({ error: Err.EINVAL, handle: 2n });
    r.send(req(Cmd.WRITE, 1024 * 1024 - 1, 4, 0, 3n), Buffer.from('abcd'));
    expect(await simpleError(r)).toEqual({ error: Err.ENOSPC, handle: 3n });
    r.send(req(Cmd.TRIM, 1024 * 1024, 1, 0, 4n));
    expect(await simpleError(r)).toEqual({ error: Err.EINVAL, handle: 4n });
    r.send(req(Cmd.WRITE_ZEROES, 1024 * 1024 - 1, 2, 0, 5n));
    expect(await simpleError(r)).toEqual({ error: Err.ENOSPC, handle: 5n });
    // Still in step: a good write and read.
    r.send(req(Cmd.WRITE, 0, 4, 0, 6n), Buffer.from('wxyz'));
    expect(await simpleError(r)).toEqual({ error: 0, handle: 6n });
    r.send(req(Cmd.READ, 0, 4, 0, 7n));
    expect(await simpleError(r)).toEqual({ error: 0, handle: 7n });
    expect((await r.read(4)).toString()).toBe('wxyz');
  });

  it('refuses a write payload over 32 MiB with EINVAL after skipping it, and stays in step', async () => {
    s = await serveTempDisk({ size: 64 * 1024 * 1024 });
    const r = await raw();
    await r.go('');
    const big = 33 * 1024 * 1024;
    r.send(req(Cmd.WRITE, 0, big, 0, 9n), Buffer.alloc(big, 0x55));
    expect(await simpleError(r)).toEqual({ error: Err.EINVAL, handle: 9n });
    r.send(req(Cmd.READ, 0, 3 * 1024 * 1024 * 11, 0, 10n));
    expect(await simpleError(r)).toEqual({ error: Err.EINVAL, handle: 10n });
    r.send(req(Cmd.READ, 0, 16, 0, 11n));
    expect(await simpleError(r)).toEqual({ error: 0, handle: 11n });
    expect((await r.read(16)).every((b) => b === 0)).toBe(true);
  });

  it('answers writes to a read-only export with EPERM, unknown commands and flags with EINVAL', async () => {
    s = await serveTempDisk({ prepare: async (d) => void (await d.snapshot('snap')) });
    const r = await raw();
    await r.go('snap', { structured: true });
    r.send(req(Cmd.WRITE, 0, 3, 0, 1n), Buffer.from('abc'));
    expect(await structuredError(r)).toEqual({ error: Err.EPERM, handle: 1n, type: ReplyType.ERROR });
    r.send(req(Cmd.TRIM, 0, 3, 0, 2n));
    expect((await structuredError(r)).error).toBe(Err.EPERM);
    r.send(req(77, 0, 0, 0, 3n));
    expect((await structuredError(r)).error).toBe(Err.EINVAL);
    r.send(req(Cmd.READ, 0, 10, CMD_FLAG_REQ_ONE, 4n));
    expect((await structuredError(r)).error).toBe(Err.EINVAL);
    // FUA is not offered on a read-only export.
    r.send(req(Cmd.FLUSH, 0, 0, CMD_FLAG_FUA, 5n));
    expect((await structuredError(r)).error).toBe(Err.EINVAL);
    r.send(req(Cmd.FLUSH, 5, 0, 0, 6n));
    expect((await structuredError(r)).error).toBe(Err.EINVAL);
    // BLOCK_STATUS without a selected context.
    r.send(req(Cmd.BLOCK_STATUS, 0, 4096, 0, 7n));
    expect((await structuredError(r)).error).toBe(Err.EINVAL);
    // A READ with DF is fine: one data chunk.
    r.send(req(Cmd.READ, 0, 8, CMD_FLAG_DF, 8n));
    const h = decodeChunkHeader(await r.read(20));
    expect(h).toMatchObject({ type: ReplyType.OFFSET_DATA, handle: 8n, length: 16, flags: 1 });
    await r.read(16);
  });

  it('answers a READ error with a structured reply, never a simple one, once structured replies are agreed', async () => {
    s = await serveTempDisk();
    const r = await raw();
    await r.go('', { structured: true });
    r.send(req(Cmd.READ, 2n ** 63n, 10, 0, 42n));
    expect(await structuredError(r)).toEqual({ error: Err.EINVAL, handle: 42n, type: ReplyType.ERROR });
  });

  it('hangs up on a request with a wrong magic, after answering what it had read', async () => {
    s = await serveTempDisk();
    const r = await raw();
    await r.go('');
    r.send(req(Cmd.WRITE, 0, 5, 0, 1n), Buffer.from('hello'), Buffer.alloc(28, 0xee));
    expect(await simpleError(r)).toEqual({ error: 0, handle: 1n });
    expect(await r.closedWithin()).toBe(true);
    expect((await s.disk.read(0, 5)).toString()).toBe('hello');
    await stillServes();
  });

  it('answers everything a half-closed client sent, then closes', async () => {
    s = await serveTempDisk();
    const r = await raw();
    await r.go('');
    r.send(req(Cmd.WRITE, 100, 4096, 0, 1n), pattern(4096, 1), req(Cmd.WRITE, 8192, 4096, 0, 2n), pattern(4096, 2), req(Cmd.FLUSH, 0, 0, 0, 3n));
    r.socket.end();
    const handles = new Set<bigint>();
    for (let i = 0; i < 3; i++) {
      const rep = await simpleError(r);
      expect(rep.error).toBe(0);
      handles.add(rep.handle);
    }
    expect(handles).toEqual(new Set([1n, 2n, 3n]));
    expect(await r.closedWithin()).toBe(true);
    expect(await s.disk.read(100, 4096)).toEqual(pattern(4096, 1));
    expect(await s.disk.read(8192, 4096)).toEqual(pattern(4096, 2));
  });

  it('answers requests in flight on NBD_CMD_DISC before closing', async () => {
    s = await serveTempDisk();
    const r = await raw();
    await r.go('');
    r.send(req(Cmd.WRITE, 0, 8192, 0, 1n), pattern(8192, 2), req(Cmd.DISC, 0, 0, 0, 2n));
    expect(await simpleError(r)).toEqual({ error: 0, handle: 1n });
    expect(await r.closedWithin()).toBe(true);
    expect(await s.disk.read(0, 8192)).toEqual(pattern(8192, 2));
  });

  it('stops reading from a client that floods requests without reading replies, and survives its reset', async () => {
    s = await serveTempDisk({ size: 64 * 1024 * 1024, serve: { limits: { maxInFlightBytes: 4 * 1024 * 1024, maxInFlightRequests: 64 } } });
    const r = await raw();
    await r.go('');
    r.socket.pause();
    const one = req(Cmd.READ, 0, 1024 * 1024, 0, 1n);
    let sent = 0;
    // Keep writing until the socket's own buffer backs up: the server stopped reading.
    while (r.socket.writableLength < 1024 * 1024 && sent < 2_000_000) {
      r.socket.write(one);
      sent++;
      if (sent % 1000 === 0) await new Promise((res) => setTimeout(res, 1));
    }
    expect(sent).toBeLessThan(2_000_000);
    await new Promise((res) => setTimeout(res, 200));
    const before = process.memoryUsage().rss;
    r.socket.resetAndDestroy();
    await stillServes();
    expect(process.memoryUsage().rss - before).toBeLessThan(256 * 1024 * 1024);
  });

  it('keeps acknowledged writes when a client resets in the middle of a payload', async () => {
    s = await serveTempDisk();
    const r = await raw();
    await r.go('');
    r.send(req(Cmd.WRITE, 0, 4096, 0, 1n), pattern(4096, 7), req(Cmd.FLUSH, 0, 0, 0, 2n));
    await simpleError(r);
    await simpleError(r);
    r.send(req(Cmd.WRITE, 4096, 65536, 0, 3n), pattern(1000, 8));
    await new Promise((res) => setTimeout(res, 50));
    r.socket.resetAndDestroy();
    await stillServes();
    expect(await s.disk.read(5, 4091)).toEqual(pattern(4096, 7).subarray(5));
    expect((await s.disk.read(4096, 65536)).every((b) => b === 0)).toBe(true);
  });

  it('survives random request headers and garbage from many clients (fuzz)', async () => {
    s = await serveTempDisk({ size: 1 << 20 });
    const header = fc.record({
      flags: fc.integer({ min: 0, max: 0xffff }),
      type: fc.oneof(fc.integer({ min: 0, max: 8 }), fc.integer({ min: 0, max: 0xffff })),
      offset: fc.oneof(fc.bigInt({ min: 0n, max: 1n << 21n }), fc.bigInt({ min: 0n, max: (1n << 64n) - 1n })),
      length: fc.oneof(fc.integer({ min: 0, max: 70_000 }), fc.integer({ min: 0, max: 0xffffffff })),
    });
    const step = fc.oneof(
      header.map((h) => ({ kind: 'request' as const, ...h })),
      fc.uint8Array({ minLength: 1, maxLength: 64 }).map((bytes) => ({ kind: 'garbage' as const, bytes })),
    );
    await fc.assert(
      fc.asyncProperty(fc.boolean(), fc.array(step, { maxLength: 12 }), async (structured, steps) => {
        const r = await RawClient.handshake(s!.port);
        try {
          await r.go('', { structured });
          for (const st of steps) {
            if (st.kind === 'garbage') r.send(Buffer.from(st.bytes));
            else {
              r.send(req(st.type, st.offset, st.length, st.flags, 7n));
              // A write's payload, capped: a client may lie about the length.
              if (st.type === Cmd.WRITE) r.send(Buffer.alloc(Math.min(st.length, 70_000), 0x33));
            }
          }
          await new Promise((res) => setTimeout(res, 20));
        } finally {
          r.destroy();
        }
      }),
      { numRuns: propertyRuns(40) },
    );
    await stillServes();
  });

  it('survives random options and garbage during the handshake (fuzz)', async () => {
    s = await serveTempDisk();
    const option = fc.record({
      option: fc.oneof(fc.integer({ min: 0, max: 12 }), fc.integer({ min: 0, max: 0xffffffff })),
      data: fc.uint8Array({ maxLength: 80 }),
    });
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 0, max: 3 }), fc.array(fc.oneof(option, fc.uint8Array({ minLength: 1, maxLength: 40 })), { maxLength: 8 }), async (flags, steps) => {
        const r = await RawClient.handshake(s!.port, flags);
        try {
          for (const st of steps) r.send(st instanceof Uint8Array ? Buffer.from(st) : encodeOption(st.option, Buffer.from(st.data)));
          await new Promise((res) => setTimeout(res, 10));
        } finally {
          r.destroy();
        }
      }),
      { numRuns: propertyRuns(40) },
    );
    await stillServes();
  });
});

