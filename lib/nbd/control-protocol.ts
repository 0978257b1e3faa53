/**
 * The control protocol of a served disk, version 1 (docs/FORMAT.md, "Control
 * channel"): JSON lines over the Unix socket `<disk>.ctl`. Pure: framing,
 * encoding and validation, no I/O.
 *
 * The server speaks first with a hello naming the protocol and version; then
 * the client sends one request per line and gets exactly one reply line per
 * request, in order. A line longer than MAX_CONTROL_LINE is a protocol error
 * (the peer is cut off, nothing is buffered beyond it). After a successful `nbd`
 * request the same socket carries an NBD session instead.
 */
import { DeltaDiskError, ERROR_CODES, type ErrorCode } from '../errors.js';

export const CONTROL_PROTOCOL = 'deltadisk-control';
export const CONTROL_VERSION = 1;
export const MAX_CONTROL_LINE = 64 * 1024;
/** A change map reply may be long (one entry per run of changed blocks). */
export const MAX_CONTROL_REPLY_LINE = 64 * 1024 * 1024;

export interface ControlHello {
  readonly protocol: typeof CONTROL_PROTOCOL;
  readonly version: number;
  readonly pid: number;
  /** Absolute path of the disk's descriptor. */
  readonly disk: string;
  /** The current state's export name. */
  readonly exportName: string;
  readonly readOnly: boolean;
  readonly virtualSize: number;
  readonly blockSize: number;
  /** Where the NBD server listens (a URI a client such as qemu-img accepts). */
  readonly uri: string;
}

export type ControlRequest =
  | { readonly id: number; readonly op: 'list' }
  | { readonly id: number; readonly op: 'info' }
  | { readonly id: number; readonly op: 'snapshot'; readonly name: string; readonly description: string }
  | { readonly id: number; readonly op: 'delete'; readonly name: string }
  | { readonly id: number; readonly op: 'changed-blocks'; readonly from: string; readonly to: string | null }
  | { readonly id: number; readonly op: 'nbd' };

export type ControlOp = ControlRequest['op'];

export type ControlReply =
  | { readonly id: number; readonly ok: true; readonly result: unknown }
  | { readonly id: number; readonly ok: false; readonly error: { readonly code: ErrorCode; readonly message: string } };

function bad(message: string): never {
  throw new DeltaDiskError('PROTOCOL_ERROR', `control channel: ${message}`);
}

/** Splits a byte stream into lines, refusing any longer than `max` bytes. */
export class LineSplitter {
  readonly #max: number;
  #parts: Buffer[] = [];
  #partLength = 0;

  constructor(max: number) {
    this.#max = max;
  }

  /** Adds bytes; returns the complete lines (without the newline) they finish. */
  push(chunk: Buffer): string[] {
    const lines: string[] = [];
    let start = 0;
    for (;;) {
      const nl = chunk.indexOf(0x0a, start);
      if (nl === -1) break;
      const piece = chunk.subarray(start, nl);
      if (this.#partLength + piece.length > this.#max) bad(`a line longer than ${this.#max} bytes`);
      lines.push(Buffer.concat([...this.#parts, piece]).toString('utf8'));
      this.#parts = [];
      this.#partLength = 0;
      start = nl + 1;
    }
    const rest = chunk.subarray(start);
    if (this.#partLength + rest.length > this.#max) bad(`a line longer than ${this.#max} bytes`);
    if (rest.length > 0) {
      this.#parts.push(Buffer.from(rest));
      this.#partLength += rest.length;
    }
    return lines;
  }

  /** Bytes received after the last complete line. */
  get pending(): number {
    return this.#partLength;
  }
}

export function encodeLine(value: unknown): string {
  return `${JSON.stringify(value)}\n`;
}

function parseObject(line: string, what: string): Record<string, unknown> {
  let v: unknown;
  try {
    v = JSON.parse(line);
  } catch {
    bad(`${what} is not JSON`);
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) bad(`${what} is not a JSON object`);
  return v as Record<string, unknown>;
}

function str(o: Record<string, unknown>, key: string, what: string): string {
  const v = o[key];
  if (typeof v !== 'string') bad(`${what} needs a string "${key}"`);
  return v;
}

export function decodeHello(line: string): ControlHello {
  const o = parseObject(line, 'the hello');
  if (o.protocol !== CONTROL_PROTOCOL) bad('the peer is not a deltadisk control channel');
  if (o.version !== CONTROL_VERSION) {
    throw new DeltaDiskError('UNSUPPORTED_VERSION', `control protocol version ${String(o.version)}; this build speaks ${CONTROL_VERSION}`);
  }
  if (typeof o.pid !== 'number' || typeof o.readOnly !== 'boolean') bad('the hello lacks pid or readOnly');
  const size = o.virtualSize;
  const bs = o.blockSize;
  if (!Number.isSafeInteger(size) || !Number.isSafeInteger(bs) || (size as number) < 1 || (bs as number) < 1) bad('the hello lacks the disk geometry');
  return {
    protocol: CONTROL_PROTOCOL,
    version: CONTROL_VERSION,
    pid: o.pid,
    disk: str(o, 'disk', 'the hello'),
    exportName: str(o, 'exportName', 'the hello'),
    readOnly: o.readOnly,
    virtualSize: size as number,
    blockSize: bs as number,
    uri: str(o, 'uri', 'the hello'),
  };
}

/** Decodes a request; a request that cannot be understood at all is PROTOCOL_ERROR. */
export function decodeRequest(line: string): ControlRequest {
  const o = parseObject(line, 'a request');
  const id = o.id;
  if (typeof id !== 'number' || !Number.isSafeInteger(id)) bad('a request needs an integer "id"');
  const what = `request ${id}`;
  switch (o.op) {
    case 'list':
    case 'info':
    case 'nbd':
      return { id, op: o.op };
    case 'snapshot':
      return { id, op: 'snapshot', name: str(o, 'name', what), description: o.description === undefined ? '' : str(o, 'description', what) };
    case 'delete':
      return { id, op: 'delete', name: str(o, 'name', what) };
    case 'changed-blocks':
      return { id, op: 'changed-blocks', from: str(o, 'from', what), to: o.to === undefined || o.to === null ? null : str(o, 'to', what) };
    default:
      bad(`${what} has unknown op ${JSON.stringify(o.op)}`);
  }
}

export function decodeReply(line: string): ControlReply {
  const o = parseObject(line, 'a reply');
  if (typeof o.id !== 'number') bad('a reply needs an integer "id"');
  if (o.ok === true) return { id: o.id, ok: true, result: o.result };
  if (o.ok !== false || typeof o.error !== 'object' || o.error === null) bad('a reply needs "ok" and a result or an error');
  const e = o.error as Record<string, unknown>;
  const code = (ERROR_CODES as readonly string[]).includes(e.code as string) ? (e.code as ErrorCode) : 'IO_ERROR';
  return { id: o.id, ok: false, error: { code, message: typeof e.message === 'string' ? e.message : 'unknown error' } };
}

/** Block numbers → runs [first, count], the wire form of a change map. */
export function toRuns(blocks: readonly number[]): [number, number][] {
  const runs: [number, number][] = [];
  for (const b of blocks) {
    const last = runs[runs.length - 1];
    if (last !== undefined && last[0] + last[1] === b) last[1]++;
    else runs.push([b, 1]);
  }
  return runs;
}

/** Runs → block numbers, checked: ascending, disjoint, at most `maxBlocks` in all. */
export function fromRuns(runs: unknown, maxBlocks: number): number[] {
  if (!Array.isArray(runs)) bad('a change map must be a list of runs');
  const out: number[] = [];
  let next = 0;
  for (const r of runs) {
    if (!Array.isArray(r) || r.length !== 2 || !Number.isSafeInteger(r[0]) || !Number.isSafeInteger(r[1])) bad('a run must be [first, count]');
    const [first, count] = r as [number, number];
    if (first < next || count < 1 || out.length + count > maxBlocks) bad('runs must be ascending, disjoint and within the disk');
    for (let b = first; b < first + count; b++) out.push(b);
    next = first + count;
  }
  return out;
}
