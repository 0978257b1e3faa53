/**
 * The client side of the NBD fixed-newstyle handshake: greeting, client flags,
 * structured replies and base:allocation when wanted (and offered), then
 * NBD_OPT_GO. Used by NbdClient; separate because it is a sequence of its own,
 * finished before the first request.
 *
 * It insists on what a modern server must offer (fixed newstyle, NBD_OPT_GO with
 * NBD_INFO_EXPORT) and accepts what a server may decline (structured replies,
 * metadata contexts): the client then works without them.
 */
import type { Duplex } from 'node:stream';
import { DeltaDiskError } from '../errors.js';
import {
  BASE_ALLOCATION,
  FLAG_C_FIXED_NEWSTYLE,
  FLAG_C_NO_ZEROES,
  FLAG_FIXED_NEWSTYLE,
  FLAG_NO_ZEROES,
  Info,
  MAX_OPTION_LENGTH,
  OPTION_REPLY_HEADER_LENGTH,
  Opt,
  Rep,
  isErrorReply,
} from './constants.js';
import {
  decodeGreeting,
  decodeInfoReply,
  decodeMetaContextReply,
  decodeOptionReplyHeader,
  encodeClientFlags,
  encodeInfoRequest,
  encodeMetaContextRequest,
  encodeOption,
  type BlockSizes,
} from './handshake-codec.js';
import type { SocketReader } from './socket-reader.js';
import { decodeString } from './wire-strings.js';

export interface NbdClientOptions {
  /** Ask for structured replies (default true). */
  readonly structured?: boolean;
  /** Ask for base:allocation (default true; needs structured replies). */
  readonly allocation?: boolean;
}

/** What the handshake settled. */
export interface Agreement {
  readonly size: number;
  readonly transmissionFlags: number;
  readonly blockSizes: BlockSizes | undefined;
  readonly structured: boolean;
  /** The id the server gave base:allocation, when it was selected. */
  readonly allocationContext: number | undefined;
}

function lost(message: string): DeltaDiskError {
  return new DeltaDiskError('PROTOCOL_ERROR', message);
}

/**
 * Negotiates export `name` on a connected socket.
 * @throws NOT_FOUND when the server has no such export, PROTOCOL_ERROR otherwise
 */
export async function clientHandshake(socket: Duplex, reader: SocketReader, name: string, options: NbdClientOptions): Promise<Agreement> {
  const must = async (n: number): Promise<Buffer> => {
    const b = await reader.read(n);
    if (b === undefined) throw lost('the server closed the connection during the handshake');
    return b;
  };
  const hs = decodeGreeting(await must(18));
  if ((hs & FLAG_FIXED_NEWSTYLE) === 0) throw lost('the server does not offer the fixed newstyle handshake');
  socket.write(encodeClientFlags(FLAG_C_FIXED_NEWSTYLE | (hs & FLAG_NO_ZEROES ? FLAG_C_NO_ZEROES : 0)));
  /** Sends an option and collects its replies up to the final one. */
  const option = async (opt: number, data?: Buffer): Promise<{ final: number; message: string; replies: { type: number; data: Buffer }[] }> => {
    socket.write(encodeOption(opt, data));
    const replies: { type: number; data: Buffer }[] = [];
    for (;;) {
      const h = decodeOptionReplyHeader(await must(OPTION_REPLY_HEADER_LENGTH));
      if (h.option !== opt) throw lost(`the server answered option ${h.option} to option ${opt}`);
      if (h.length > MAX_OPTION_LENGTH) throw lost(`an option reply of ${h.length} bytes`);
      const payload = await must(h.length);
      if (h.type === Rep.ACK || isErrorReply(h.type)) {
        const message = isErrorReply(h.type) && payload.length > 0 ? decodeString(payload, 'an error message') : '';
        return { final: h.type, message, replies };
      }
      replies.push({ type: h.type, data: payload });
    }
  };
  let structured = false;
  if (options.structured !== false) structured = (await option(Opt.STRUCTURED_REPLY)).final === Rep.ACK;
  let context: number | undefined;
  if (structured && options.allocation !== false) {
    const r = await option(Opt.SET_META_CONTEXT, encodeMetaContextRequest({ name, queries: [BASE_ALLOCATION] }));
    if (r.final === Rep.ACK) {
      for (const c of r.replies) {
        const m = decodeMetaContextReply(c.data);
        if (c.type === Rep.META_CONTEXT && m.name === BASE_ALLOCATION) context = m.id;
      }
    }
  }
  const go = await option(Opt.GO, encodeInfoRequest({ name, requests: [Info.BLOCK_SIZE] }));
  if (go.final !== Rep.ACK) {
    if (go.final === Rep.ERR_UNKNOWN) throw new DeltaDiskError('NOT_FOUND', `the server has no export ${JSON.stringify(name)}${go.message ? ` (${go.message})` : ''}`);
    throw lost(`the server refused export ${JSON.stringify(name)}: reply 0x${go.final.toString(16)}${go.message ? ` (${go.message})` : ''}`);
  }
  let size: number | undefined;
  let flags = 0;
  let sizes: BlockSizes | undefined;
  for (const r of go.replies) {
    if (r.type !== Rep.INFO) continue;
    const info = decodeInfoReply(r.data);
    if (info.type === 'export') {
      size = info.size;
      flags = info.flags;
    } else if (info.type === 'block-size') sizes = info.sizes;
  }
  if (size === undefined) throw lost('the server accepted the export without describing it (no NBD_INFO_EXPORT)');
  return { size, transmissionFlags: flags, blockSizes: sizes, structured, allocationContext: context };
}
