/**
 * Strings as the NBD protocol defines them: UTF-8, no NUL, at most 4096 bytes.
 *
 * Decoding is strict (invalid UTF-8 or a NUL is a PROTOCOL_ERROR, never replaced
 * characters), so an export name a client sends is either exactly the name we
 * know or refused. Encoding truncates human-readable messages at a character
 * boundary so they always fit the limit.
 */
import { DeltaDiskError } from '../errors.js';
import { MAX_STRING_BYTES } from './constants.js';

const decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** Decodes a protocol string; `what` names it in the error. */
export function decodeString(bytes: Uint8Array, what: string): string {
  if (bytes.length > MAX_STRING_BYTES) {
    throw new DeltaDiskError('PROTOCOL_ERROR', `${what} is ${bytes.length} bytes; the protocol allows at most ${MAX_STRING_BYTES}`);
  }
  if (bytes.includes(0)) throw new DeltaDiskError('PROTOCOL_ERROR', `${what} contains a NUL byte`);
  try {
    return decoder.decode(bytes);
  } catch {
    throw new DeltaDiskError('PROTOCOL_ERROR', `${what} is not valid UTF-8`);
  }
}

/** Encodes a string we send that must be exact (a name); refuses what the protocol forbids. */
export function encodeString(text: string, what: string): Buffer {
  const bytes = Buffer.from(text, 'utf8');
  if (bytes.length > MAX_STRING_BYTES || bytes.includes(0)) {
    throw new DeltaDiskError('INVALID_ARGUMENT', `${what} must be at most ${MAX_STRING_BYTES} bytes of UTF-8 without NUL`);
  }
  return bytes;
}

/** Encodes a message for a human, cut to `max` bytes at a character boundary, NULs dropped. */
export function encodeMessage(text: string, max = MAX_STRING_BYTES): Buffer {
  let bytes = Buffer.from(text.replaceAll('\0', ''), 'utf8');
  if (bytes.length <= max) return bytes;
  let end = max;
  // Step back over UTF-8 continuation bytes so the cut never splits a character.
  while (end > 0 && (bytes[end]! & 0xc0) === 0x80) end--;
  bytes = bytes.subarray(0, end);
  return bytes;
}
