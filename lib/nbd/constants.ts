/**
 * The numbers of the Network Block Device protocol (NetworkBlockDevice/nbd,
 * doc/proto.md), as far as deltadisk speaks it, and the limits our server and
 * client apply on top of them.
 *
 * Every value here is fixed by the specification except the `MAX_*` limits, which
 * are ours: they bound what one peer can make the other allocate.
 */

/** 'NBDMAGIC', sent first by the server. */
export const NBD_MAGIC = 0x4e42444d41474943n;
/** 'IHAVEOPT': the newstyle handshake magic, and the prefix of every client option. */
export const IHAVEOPT = 0x49484156454f5054n;
/** Prefix of every fixed-newstyle option reply. */
export const OPTION_REPLY_MAGIC = 0x3e889045565a9n;

export const REQUEST_MAGIC = 0x25609513;
export const SIMPLE_REPLY_MAGIC = 0x67446698;
export const STRUCTURED_REPLY_MAGIC = 0x668e33ef;

/** Handshake flags (server, 16 bits). */
export const FLAG_FIXED_NEWSTYLE = 1 << 0;
export const FLAG_NO_ZEROES = 1 << 1;

/** Client flags (32 bits). */
export const FLAG_C_FIXED_NEWSTYLE = 1 << 0;
export const FLAG_C_NO_ZEROES = 1 << 1;

/** Transmission flags (16 bits). */
export const TFLAG_HAS_FLAGS = 1 << 0;
export const TFLAG_READ_ONLY = 1 << 1;
export const TFLAG_SEND_FLUSH = 1 << 2;
export const TFLAG_SEND_FUA = 1 << 3;
export const TFLAG_ROTATIONAL = 1 << 4;
export const TFLAG_SEND_TRIM = 1 << 5;
export const TFLAG_SEND_WRITE_ZEROES = 1 << 6;
export const TFLAG_SEND_DF = 1 << 7;
export const TFLAG_CAN_MULTI_CONN = 1 << 8;
export const TFLAG_SEND_FAST_ZERO = 1 << 11;

/** Options (client → server during the handshake). */
export const Opt = {
  EXPORT_NAME: 1,
  ABORT: 2,
  LIST: 3,
  PEEK_EXPORT: 4,
  STARTTLS: 5,
  INFO: 6,
  GO: 7,
  STRUCTURED_REPLY: 8,
  LIST_META_CONTEXT: 9,
  SET_META_CONTEXT: 10,
} as const;

/** Option reply types. Errors have bit 31 set. */
export const Rep = {
  ACK: 1,
  SERVER: 2,
  INFO: 3,
  META_CONTEXT: 4,
  ERR_UNSUP: 0x80000001,
  ERR_POLICY: 0x80000002,
  ERR_INVALID: 0x80000003,
  ERR_PLATFORM: 0x80000004,
  ERR_TLS_REQD: 0x80000005,
  ERR_UNKNOWN: 0x80000006,
  ERR_SHUTDOWN: 0x80000007,
  ERR_BLOCK_SIZE_REQD: 0x80000008,
  ERR_TOO_BIG: 0x80000009,
} as const;

export function isErrorReply(type: number): boolean {
  return (type & 0x80000000) !== 0;
}

/** Information types in NBD_REP_INFO replies to NBD_OPT_INFO / NBD_OPT_GO. */
export const Info = {
  EXPORT: 0,
  NAME: 1,
  DESCRIPTION: 2,
  BLOCK_SIZE: 3,
} as const;

/** Commands (transmission phase). */
export const Cmd = {
  READ: 0,
  WRITE: 1,
  DISC: 2,
  FLUSH: 3,
  TRIM: 4,
  CACHE: 5,
  WRITE_ZEROES: 6,
  BLOCK_STATUS: 7,
} as const;

/** Command flags. */
export const CMD_FLAG_FUA = 1 << 0;
export const CMD_FLAG_NO_HOLE = 1 << 1;
export const CMD_FLAG_DF = 1 << 2;
export const CMD_FLAG_REQ_ONE = 1 << 3;
export const CMD_FLAG_FAST_ZERO = 1 << 4;

/** Structured reply chunk flags and types. */
export const REPLY_FLAG_DONE = 1 << 0;
export const ReplyType = {
  NONE: 0,
  OFFSET_DATA: 1,
  OFFSET_HOLE: 2,
  BLOCK_STATUS: 5,
  ERROR: 0x8001,
  ERROR_OFFSET: 0x8002,
} as const;

/** Error values in replies (errno-like, but fixed by the protocol). */
export const Err = {
  EPERM: 1,
  EIO: 5,
  ENOMEM: 12,
  EINVAL: 22,
  ENOSPC: 28,
  EOVERFLOW: 75,
  ENOTSUP: 95,
  ESHUTDOWN: 108,
} as const;
export type NbdErrno = (typeof Err)[keyof typeof Err];

/** The one metadata context we serve, and its flags. */
export const BASE_ALLOCATION = 'base:allocation';
export const STATE_HOLE = 1 << 0;
export const STATE_ZERO = 1 << 1;

/** Lengths of fixed-size messages. */
export const REQUEST_HEADER_LENGTH = 28;
export const SIMPLE_REPLY_LENGTH = 16;
export const STRUCTURED_HEADER_LENGTH = 20;
export const OPTION_HEADER_LENGTH = 16;
export const OPTION_REPLY_HEADER_LENGTH = 20;

/** The longest string the protocol allows (export names, messages, context names). */
export const MAX_STRING_BYTES = 4096;
/**
 * The largest option payload we read into memory. A valid option is far smaller
 * (a name of at most 4096 bytes plus a few counts and queries); anything larger is
 * discarded unread and refused with NBD_REP_ERR_TOO_BIG.
 */
export const MAX_OPTION_LENGTH = 64 * 1024;
/**
 * The largest READ or WRITE payload: 32 MiB, the size the protocol says no peer
 * should treat as a denial of service. Advertised as the maximum block size.
 */
export const MAX_PAYLOAD = 32 * 1024 * 1024;
/** Options one client may send before we consider it hostile and hang up. */
export const MAX_OPTIONS = 256;
/** Metadata context queries in one option. */
export const MAX_QUERIES = 64;
