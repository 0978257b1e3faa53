/**
 * The frame around every structured repository file (index, manifest, prune plan,
 * verification record): a fixed header, a msgpack payload, and a SHA-256 over both.
 *
 *     offset 0   8 bytes  magic (names the kind of file)
 *     offset 8   u16      format version
 *     offset 10  u16      feature flags (0; anything else is refused)
 *     offset 12  u32      payload length
 *     offset 16  n bytes  payload (msgpack)
 *     offset 16+n 32      SHA-256 of bytes 0 … 16+n
 *
 * Decoding checks the sizes against the caller's cap before touching the payload,
 * then the hash, then decodes msgpack with every string, binary, array and map
 * length bounded, so damaged or hostile bytes end in a typed error.
 */
import { createHash } from 'node:crypto';
import { decode, encode } from '@msgpack/msgpack';
import { DeltaDiskError } from '../errors.js';
import { REPO_FORMAT_VERSION } from './repo-limits.js';

export const FRAME_HEADER = 16;
export const FRAME_TRAILER = 32;

export interface MsgpackBounds {
  readonly maxStrLength: number;
  readonly maxBinLength: number;
  readonly maxArrayLength: number;
  readonly maxMapLength: number;
}

export function encodeFramed(magic: Buffer, payload: unknown): Buffer {
  const body = encode(payload, { ignoreUndefined: true });
  const out = Buffer.allocUnsafe(FRAME_HEADER + body.length + FRAME_TRAILER);
  magic.copy(out, 0);
  out.writeUInt16LE(REPO_FORMAT_VERSION, 8);
  out.writeUInt16LE(0, 10);
  out.writeUInt32LE(body.length, 12);
  out.set(body, FRAME_HEADER);
  createHash('sha256').update(out.subarray(0, FRAME_HEADER + body.length)).digest().copy(out, FRAME_HEADER + body.length);
  return out;
}

/**
 * Checks the frame of `bytes` and returns the decoded payload (not yet validated).
 * @throws REPO_CORRUPT, UNSUPPORTED_VERSION, LIMIT_EXCEEDED
 */
export function decodeFramed(bytes: Uint8Array, magic: Buffer, what: string, maxBytes: number, bounds: MsgpackBounds, path?: string): unknown {
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (b.length > maxBytes) {
    throw new DeltaDiskError('LIMIT_EXCEEDED', `${what} is ${b.length} bytes, at most ${maxBytes} allowed`, { path });
  }
  if (b.length < FRAME_HEADER + FRAME_TRAILER || !b.subarray(0, 8).equals(magic)) {
    throw new DeltaDiskError('REPO_CORRUPT', `${what} is not a ${what} (bad magic or too short)`, { path });
  }
  const version = b.readUInt16LE(8);
  const flags = b.readUInt16LE(10);
  if (version !== REPO_FORMAT_VERSION || flags !== 0) {
    throw new DeltaDiskError('UNSUPPORTED_VERSION', `${what} has version ${version}, flags ${flags}; this build reads version ${REPO_FORMAT_VERSION}`, { path });
  }
  const n = b.readUInt32LE(12);
  if (FRAME_HEADER + n + FRAME_TRAILER !== b.length) {
    throw new DeltaDiskError('REPO_CORRUPT', `${what}: payload length ${n} does not match the file size ${b.length}`, { path });
  }
  const digest = createHash('sha256').update(b.subarray(0, FRAME_HEADER + n)).digest();
  if (!digest.equals(b.subarray(FRAME_HEADER + n))) {
    throw new DeltaDiskError('REPO_CORRUPT', `${what}: checksum mismatch (damaged)`, { path });
  }
  try {
    return decode(b.subarray(FRAME_HEADER, FRAME_HEADER + n), { ...bounds, maxExtLength: 0 });
  } catch (err) {
    throw new DeltaDiskError('REPO_CORRUPT', `${what}: payload is not valid msgpack`, { path, cause: err });
  }
}

/** Small validation helpers shared by the repository decoders. */
export class Fields {
  readonly #o: Record<string, unknown>;
  readonly #what: string;
  readonly #path: string | undefined;

  constructor(v: unknown, what: string, path?: string) {
    this.#what = what;
    this.#path = path;
    if (typeof v !== 'object' || v === null || Array.isArray(v) || v instanceof Uint8Array) this.fail('is not a map');
    this.#o = v as Record<string, unknown>;
  }

  fail(message: string): never {
    throw new DeltaDiskError('REPO_CORRUPT', `${this.#what}: ${message}`, { path: this.#path });
  }

  has(key: string): boolean {
    return this.#o[key] !== undefined && this.#o[key] !== null;
  }

  raw(key: string): unknown {
    return this.#o[key];
  }

  int(key: string, min = 0, max = Number.MAX_SAFE_INTEGER): number {
    const v = this.#o[key];
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min || v > max) this.fail(`field ${key} is not an integer in ${min}…${max}`);
    return v;
  }

  num(key: string): number {
    const v = this.#o[key];
    if (typeof v !== 'number' || !Number.isFinite(v)) this.fail(`field ${key} is not a number`);
    return v;
  }

  str(key: string, max: number, min = 0): string {
    const v = this.#o[key];
    if (typeof v !== 'string' || v.length < min || v.length > max) this.fail(`field ${key} is not a string of ${min}…${max} characters`);
    return v;
  }

  optStr(key: string, max: number): string | null {
    return this.has(key) ? this.str(key, max) : null;
  }

  bool(key: string): boolean {
    const v = this.#o[key];
    if (typeof v !== 'boolean') this.fail(`field ${key} is not a boolean`);
    return v;
  }

  bin(key: string, length?: number, maxLength = Number.MAX_SAFE_INTEGER): Buffer {
    const v = this.#o[key];
    if (!(v instanceof Uint8Array) || (length !== undefined && v.length !== length) || v.length > maxLength) {
      this.fail(`field ${key} is not ${length === undefined ? 'binary' : `${length} bytes of binary`}`);
    }
    return Buffer.from(v.buffer, v.byteOffset, v.byteLength);
  }

  array(key: string, max: number): unknown[] {
    const v = this.#o[key];
    if (!Array.isArray(v) || v.length > max) this.fail(`field ${key} is not a list of at most ${max} items`);
    return v;
  }

  strings(key: string, maxCount: number, maxLength: number): string[] {
    const list = this.array(key, maxCount);
    for (const s of list) if (typeof s !== 'string' || s.length > maxLength) this.fail(`field ${key} holds something other than short strings`);
    return list as string[];
  }

  fields(key: string): Fields {
    return new Fields(this.#o[key], `${this.#what}.${key}`, this.#path);
  }
}

export const HEX64 = /^[0-9a-f]{64}$/;
export const HEX32 = /^[0-9a-f]{32}$/;
