/**
 * The server side of the NBD fixed-newstyle handshake: greeting, client flags,
 * and option haggling until the client picks an export (NBD_OPT_GO or
 * NBD_OPT_EXPORT_NAME), aborts, or goes away.
 *
 * It follows doc/proto.md where clients are lenient: unknown client flags end the
 * session; every option gets exactly one final reply; options we do not know get
 * NBD_REP_ERR_UNSUP and the stream stays in step (their data is skipped, never
 * buffered beyond MAX_OPTION_LENGTH); malformed options get NBD_REP_ERR_INVALID;
 * metadata contexts need structured replies first and are valid only for the
 * export they were selected on. The only hard disconnects are the ones the
 * specification prescribes (a wrong magic, unknown client flags, EXPORT_NAME of
 * an export we cannot serve) and a client that never stops haggling.
 */
import { DeltaDiskError } from '../errors.js';
import {
  BASE_ALLOCATION,
  FLAG_C_FIXED_NEWSTYLE,
  FLAG_C_NO_ZEROES,
  FLAG_FIXED_NEWSTYLE,
  FLAG_NO_ZEROES,
  Info,
  MAX_OPTION_LENGTH,
  MAX_OPTIONS,
  MAX_PAYLOAD,
  OPTION_HEADER_LENGTH,
  Opt,
  Rep,
  TFLAG_CAN_MULTI_CONN,
  TFLAG_HAS_FLAGS,
  TFLAG_READ_ONLY,
  TFLAG_SEND_DF,
  TFLAG_SEND_FAST_ZERO,
  TFLAG_SEND_FLUSH,
  TFLAG_SEND_FUA,
  TFLAG_SEND_TRIM,
  TFLAG_SEND_WRITE_ZEROES,
} from './constants.js';
import type { ExportCatalog, ExportInfo, NbdExport } from './disk-exports.js';
import {
  decodeClientFlags,
  decodeInfoRequest,
  decodeMetaContextRequest,
  decodeOptionHeader,
  encodeExportNameReply,
  encodeGreeting,
  encodeInfoBlockSize,
  encodeInfoDescription,
  encodeInfoExport,
  encodeInfoName,
  encodeMetaContextReply,
  encodeOptionError,
  encodeOptionReply,
  encodeServerReply,
  type InfoRequest,
} from './handshake-codec.js';
import { decodeString } from './wire-strings.js';

/** The id we give base:allocation when a client selects it. */
export const ALLOCATION_CONTEXT_ID = 1;

export interface HandshakeIo {
  /** The next n bytes; undefined at a clean end of stream. */
  read(n: number): Promise<Buffer | undefined>;
  skip(n: number): Promise<void>;
  send(data: Buffer): void;
  /** True once the server is stopping: options are refused with NBD_REP_ERR_SHUTDOWN. */
  shuttingDown(): boolean;
}

export interface Negotiated {
  readonly export: NbdExport;
  readonly structured: boolean;
  /** The id of base:allocation when the client selected it for this export. */
  readonly allocationContext: number | undefined;
  readonly transmissionFlags: number;
}

/** The transmission flags of an export, given whether structured replies were negotiated. */
export function transmissionFlags(info: ExportInfo, structured: boolean): number {
  let flags = TFLAG_HAS_FLAGS | TFLAG_SEND_FLUSH | TFLAG_CAN_MULTI_CONN;
  if (info.readOnly) flags |= TFLAG_READ_ONLY;
  else flags |= TFLAG_SEND_FUA | TFLAG_SEND_TRIM | TFLAG_SEND_WRITE_ZEROES | TFLAG_SEND_FAST_ZERO;
  if (structured) flags |= TFLAG_SEND_DF;
  return flags;
}

function hangUp(message: string): never {
  throw new DeltaDiskError('PROTOCOL_ERROR', message);
}

class Haggler {
  readonly #io: HandshakeIo;
  readonly #catalog: ExportCatalog;
  #noZeroes = false;
  #structured = false;
  /** Export name base:allocation was selected for, if it was. */
  #contextExport: string | undefined;

  constructor(io: HandshakeIo, catalog: ExportCatalog) {
    this.#io = io;
    this.#catalog = catalog;
  }

  async run(): Promise<Negotiated | undefined> {
    const io = this.#io;
    io.send(encodeGreeting(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES));
    const flagBytes = await io.read(4);
    if (flagBytes === undefined) return undefined;
    const clientFlags = decodeClientFlags(flagBytes);
    if ((clientFlags & ~(FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES)) !== 0) {
      hangUp(`the client set unknown flags 0x${clientFlags.toString(16)}`);
    }
    this.#noZeroes = (clientFlags & FLAG_C_NO_ZEROES) !== 0;
    for (let n = 0; n < MAX_OPTIONS; n++) {
      const header = await io.read(OPTION_HEADER_LENGTH);
      if (header === undefined) return undefined;
      const { option, length } = decodeOptionHeader(header);
      if (length > MAX_OPTION_LENGTH) {
        await io.skip(length);
        if (option === Opt.EXPORT_NAME) hangUp(`an export name of ${length} bytes`);
        this.#reply(option, Rep.ERR_TOO_BIG, `option data of ${length} bytes is more than the ${MAX_OPTION_LENGTH} accepted`);
        continue;
      }
      const data = length === 0 ? Buffer.alloc(0) : await io.read(length);
      if (data === undefined) hangUp('the client closed the connection inside an option');
      const outcome = await this.#option(option, data);
      if (outcome !== 'continue') return outcome === 'abort' ? undefined : outcome;
    }
    hangUp(`the client sent more than ${MAX_OPTIONS} options without choosing an export`);
  }

  #reply(option: number, type: number, message?: string): void {
    this.#io.send(message === undefined ? encodeOptionReply(option, type) : encodeOptionError(option, type, message));
  }

  async #option(option: number, data: Buffer): Promise<Negotiated | 'continue' | 'abort'> {
    if (option === Opt.ABORT) {
      this.#reply(option, Rep.ACK);
      return 'abort';
    }
    if (this.#io.shuttingDown()) {
      if (option === Opt.EXPORT_NAME) hangUp('the server is shutting down');
      this.#reply(option, Rep.ERR_SHUTDOWN, 'the server is shutting down');
      return 'continue';
    }
    try {
      switch (option) {
        case Opt.EXPORT_NAME:
          return await this.#exportName(data);
        case Opt.LIST:
          this.#list(data);
          return 'continue';
        case Opt.INFO:
        case Opt.GO:
          return await this.#infoOrGo(option, decodeInfoRequest(data));
        case Opt.STRUCTURED_REPLY:
          if (data.length > 0) return this.#invalid(option, 'NBD_OPT_STRUCTURED_REPLY takes no data');
          this.#structured = true;
          this.#reply(option, Rep.ACK);
          return 'continue';
        case Opt.LIST_META_CONTEXT:
        case Opt.SET_META_CONTEXT:
          this.#metaContext(option, data);
          return 'continue';
        case Opt.STARTTLS:
          if (data.length > 0) return this.#invalid(option, 'NBD_OPT_STARTTLS takes no data');
          this.#reply(option, Rep.ERR_UNSUP, 'this server does not offer TLS');
          return 'continue';
        default:
          this.#reply(option, Rep.ERR_UNSUP, `option ${option} is not supported`);
          return 'continue';
      }
    } catch (err) {
      if (err instanceof DeltaDiskError && err.code === 'PROTOCOL_ERROR' && option !== Opt.EXPORT_NAME) {
        return this.#invalid(option, err.message);
      }
      throw err;
    }
  }

  #invalid(option: number, message: string): 'continue' {
    if (option === Opt.SET_META_CONTEXT) this.#contextExport = undefined;
    this.#reply(option, Rep.ERR_INVALID, message);
    return 'continue';
  }

  async #exportName(data: Buffer): Promise<Negotiated> {
    const name = decodeString(data, 'the export name');
    const opened = await this.#catalog.open(name);
    if (opened === undefined) hangUp(`the client asked for export ${JSON.stringify(name)}, which does not exist`);
    const flags = transmissionFlags(opened, this.#structured);
    this.#io.send(encodeExportNameReply(opened.size, flags, this.#noZeroes));
    return this.#negotiated(opened, name, flags);
  }

  #negotiated(opened: NbdExport, requestedName: string, flags: number): Negotiated {
    const selected = this.#contextExport !== undefined && this.#contextExport === requestedName;
    return {
      export: opened,
      structured: this.#structured,
      allocationContext: selected ? ALLOCATION_CONTEXT_ID : undefined,
      transmissionFlags: flags,
    };
  }

  #list(data: Buffer): void {
    if (data.length > 0) {
      this.#invalid(Opt.LIST, 'NBD_OPT_LIST takes no data');
      return;
    }
    for (const e of this.#catalog.list()) this.#io.send(encodeOptionReply(Opt.LIST, Rep.SERVER, encodeServerReply(e.name, e.description)));
    this.#reply(Opt.LIST, Rep.ACK);
  }

  async #infoOrGo(option: number, req: InfoRequest): Promise<Negotiated | 'continue'> {
    const info = this.#catalog.find(req.name);
    if (info === undefined) {
      this.#reply(option, Rep.ERR_UNKNOWN, `there is no export named ${JSON.stringify(req.name)}`);
      return 'continue';
    }
    let opened: NbdExport | undefined;
    if (option === Opt.GO) {
      try {
        opened = await this.#catalog.open(req.name);
      } catch (err) {
        this.#reply(option, Rep.ERR_UNKNOWN, `export ${JSON.stringify(req.name)} cannot be opened: ${(err as Error).message}`);
        return 'continue';
      }
      if (opened === undefined) {
        this.#reply(option, Rep.ERR_UNKNOWN, `export ${JSON.stringify(req.name)} is gone`);
        return 'continue';
      }
    }
    const e = opened ?? info;
    const flags = transmissionFlags(e, this.#structured);
    const send = (payload: Buffer): void => this.#io.send(encodeOptionReply(option, Rep.INFO, payload));
    send(encodeInfoExport(e.size, flags));
    if (req.requests.includes(Info.NAME) || req.name !== e.name) send(encodeInfoName(e.name));
    if (req.requests.includes(Info.DESCRIPTION)) send(encodeInfoDescription(e.description));
    // Sent whether asked or not: we refuse requests over MAX_PAYLOAD, a non-default maximum.
    send(encodeInfoBlockSize({ minimum: 1, preferred: e.blockSize, maximum: MAX_PAYLOAD }));
    this.#reply(option, Rep.ACK);
    return opened === undefined ? 'continue' : this.#negotiated(opened, req.name, flags);
  }

  #metaContext(option: number, data: Buffer): void {
    const set = option === Opt.SET_META_CONTEXT;
    // A SET replaces the previous selection even when it fails.
    if (set) this.#contextExport = undefined;
    if (!this.#structured) {
      this.#invalid(option, 'metadata contexts need structured replies (NBD_OPT_STRUCTURED_REPLY) first');
      return;
    }
    const req = decodeMetaContextRequest(data);
    if (this.#catalog.find(req.name) === undefined) {
      this.#reply(option, Rep.ERR_UNKNOWN, `there is no export named ${JSON.stringify(req.name)}`);
      return;
    }
    for (const q of req.queries) {
      if (!q.includes(':')) {
        this.#invalid(option, `metadata context query ${JSON.stringify(q)} has no namespace`);
        return;
      }
    }
    // LIST with no queries lists everything; "base:" is a wildcard for LIST only.
    const matches = set
      ? req.queries.some((q) => q === BASE_ALLOCATION)
      : req.queries.length === 0 || req.queries.some((q) => q === BASE_ALLOCATION || q === 'base:');
    if (matches) {
      this.#io.send(encodeOptionReply(option, Rep.META_CONTEXT, encodeMetaContextReply(set ? ALLOCATION_CONTEXT_ID : 0, BASE_ALLOCATION)));
      if (set) this.#contextExport = req.name;
    }
    this.#reply(option, Rep.ACK);
  }
}

/**
 * Runs the handshake on a fresh connection.
 * @returns what was negotiated, or undefined when the client aborted or left.
 * @throws PROTOCOL_ERROR when the client broke the protocol in a way that ends the session.
 */
export function negotiate(io: HandshakeIo, catalog: ExportCatalog): Promise<Negotiated | undefined> {
  return new Haggler(io, catalog).run();
}
