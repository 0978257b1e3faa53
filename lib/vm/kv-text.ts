/**
 * The `key = "value"` text that VMware uses for `.vmx` and `.vmsd` files: decoding
 * (bounded, `.encoding`-aware) and parsing, and the inverse for files we write.
 *
 * Guarantees, for any input bytes:
 *  - the file is refused (VM_INVALID / LIMIT_EXCEEDED) or parsed; never a crash,
 *    never an allocation larger than the (bounded) input;
 *  - keys are case-insensitive: lookups go through the lower-cased key, and a key
 *    given twice (in any case) is listed in `duplicates` (the last value wins, as
 *    every reader we know of does);
 *  - values are unquoted and `|XX` escapes (a byte in hex) are decoded, as libvirt
 *    and VMware write `"` and `|` (`|22`, `|7C`);
 *  - lines that are neither blank, a comment nor `key = value` are not guessed at:
 *    their numbers are listed in `invalidLines`.
 */
import { TextDecoder } from 'node:util';
import { DeltaDiskError } from '../errors.js';

export interface KvEntry {
  /** The key as written. */
  readonly key: string;
  readonly value: string;
  /** 1-based line number. */
  readonly line: number;
}

export interface KvDocument {
  /** The character set the bytes were decoded with (the `.encoding` value, or UTF-8). */
  readonly encoding: string;
  /** Entries in file order (duplicates included). */
  readonly entries: readonly KvEntry[];
  /** The last entry for each lower-cased key. */
  readonly byKey: ReadonlyMap<string, KvEntry>;
  /** Lower-cased keys that occur more than once. */
  readonly duplicates: readonly string[];
  /** Line numbers that could not be parsed. */
  readonly invalidLines: readonly number[];
}

export const MAX_KEY_LENGTH = 1024;

/** Decodes `|XX` escapes (bytes in hex); a `|` not followed by two hex digits stays as is. */
export function unescapeValue(value: string): string {
  if (!value.includes('|')) return value;
  const bytes: number[] = [];
  const src = Buffer.from(value, 'utf8');
  for (let i = 0; i < src.length; i++) {
    const c = src[i]!;
    if (c === 0x7c && i + 2 < src.length && isHex(src[i + 1]) && isHex(src[i + 2])) {
      bytes.push(parseInt(String.fromCharCode(src[i + 1]!, src[i + 2]!), 16));
      i += 2;
    } else bytes.push(c);
  }
  const out = Buffer.from(bytes);
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(out);
  } catch {
    return value; // escapes that do not form text: keep the value as written
  }
}

function isHex(c: number | undefined): boolean {
  return c !== undefined && ((c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x46) || (c >= 0x61 && c <= 0x66));
}

/** Escapes what must not appear raw inside a quoted value: `"`, `|`, and control characters. */
export function escapeValue(value: string): string {
  // eslint-disable-next-line no-control-regex
  return value.replace(/[|"\x00-\x1f\x7f]/g, (c) => `|${c.charCodeAt(0).toString(16).toUpperCase().padStart(2, '0')}`);
}

/**
 * Decodes the bytes of a configuration file to text: refuses files over `maxBytes`,
 * honours the declared character set (the key `encodingKey`: `.encoding` in a vmx or
 * vmsd, `encoding` in a VMDK descriptor; looked for in an ASCII-compatible reading
 * first), strips a UTF-8 byte-order mark, and refuses bytes invalid in it.
 * @throws LIMIT_EXCEEDED, VM_INVALID
 */
export function decodeConfigText(bytes: Uint8Array, maxBytes: number, what: string, encodingKey = '.encoding'): { text: string; encoding: string } {
  if (bytes.length > maxBytes) {
    throw new DeltaDiskError('LIMIT_EXCEEDED', `${what} is ${bytes.length} bytes, at most ${maxBytes} are accepted`);
  }
  let body = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (body[0] === 0xef && body[1] === 0xbb && body[2] === 0xbf) body = body.subarray(3);
  const key = encodingKey.replaceAll('.', '\\.');
  const m = new RegExp(`^[ \\t]*${key}[ \\t]*=[ \\t]*"?([A-Za-z0-9._:-]{1,40})"?[ \\t]*\\r?$`, 'im').exec(body.toString('latin1'));
  const encoding = m?.[1] ?? 'UTF-8';
  let decoder: TextDecoder;
  try {
    decoder = new TextDecoder(encoding, { fatal: true });
  } catch {
    throw new DeltaDiskError('VM_INVALID', `${what} declares the unknown character set ${JSON.stringify(encoding)}`);
  }
  try {
    return { text: decoder.decode(body), encoding };
  } catch {
    throw new DeltaDiskError('VM_INVALID', `${what} is not valid ${encoding} text`);
  }
}

const LINE = /^\s*([^\s="#][^="]*?)\s*=\s*(.*?)\s*$/;

/** Parses decoded text into entries (see the module comment for the rules). */
export function parseKeyValueText(text: string, encoding: string): KvDocument {
  const entries: KvEntry[] = [];
  const byKey = new Map<string, KvEntry>();
  const duplicates = new Set<string>();
  const invalidLines: number[] = [];
  const lines = text.split(/\r?\n|\r/);
  for (let i = 0; i < lines.length; i++) {
    const raw = lines[i]!;
    const trimmed = raw.trim();
    if (trimmed === '' || trimmed.startsWith('#')) continue;
    const m = LINE.exec(raw);
    const value = m === null ? undefined : unquote(m[2]!);
    if (m === null || value === undefined || m[1]!.length > MAX_KEY_LENGTH) {
      invalidLines.push(i + 1);
      continue;
    }
    const entry: KvEntry = { key: m[1]!, value: unescapeValue(value), line: i + 1 };
    const lower = entry.key.toLowerCase();
    if (byKey.has(lower)) duplicates.add(lower);
    byKey.set(lower, entry);
    entries.push(entry);
  }
  return { encoding, entries, byKey, duplicates: [...duplicates], invalidLines };
}

function unquote(v: string): string | undefined {
  if (v.startsWith('"')) {
    if (v.length < 2 || !v.endsWith('"')) return undefined;
    const inner = v.slice(1, -1);
    return inner.includes('"') ? undefined : inner;
  }
  return v.includes('"') ? undefined : v;
}

/** Decodes and parses in one step. @throws LIMIT_EXCEEDED, VM_INVALID */
export function parseKeyValueFile(bytes: Uint8Array, maxBytes: number, what: string): KvDocument {
  const { text, encoding } = decodeConfigText(bytes, maxBytes, what);
  return parseKeyValueText(text, encoding);
}

/** A lookup helper over a document: case-insensitive, undefined when absent. */
export function kvGet(doc: KvDocument, key: string): string | undefined {
  return doc.byKey.get(key.toLowerCase())?.value;
}

/** VMware booleans: TRUE/FALSE in any case, also yes/no and 1/0 as some writers use. */
export function kvBool(value: string | undefined): boolean | undefined {
  if (value === undefined) return undefined;
  const v = value.trim().toLowerCase();
  if (v === 'true' || v === 'yes' || v === '1') return true;
  if (v === 'false' || v === 'no' || v === '0') return false;
  return undefined;
}

/** Serialises entries as `key = "value"` lines (UTF-8, LF), escaping values. */
export function encodeKeyValueText(entries: readonly (readonly [string, string])[]): Buffer {
  return Buffer.from(entries.map(([k, v]) => `${k} = "${escapeValue(v)}"\n`).join(''), 'utf8');
}
