import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { isDeltaDiskError } from '../../lib/errors.js';
import { decodeConfigText, encodeKeyValueText, escapeValue, kvGet, parseKeyValueFile, unescapeValue } from '../../lib/vm/kv-text.js';
import { propertyRuns } from '../helpers/temp-dir.js';

const enc = (s: string) => Buffer.from(s, 'utf8');

describe('key = "value" text', () => {
  it('matches keys case-insensitively and reports duplicates (last wins)', () => {
    const doc = parseKeyValueFile(enc('scsi0:1.present = "TRUE"\nSCSI0:1.Present = "false"\n'), 1024, 'x');
    expect(kvGet(doc, 'Scsi0:1.PRESENT')).toBe('false');
    expect(doc.duplicates).toEqual(['scsi0:1.present']);
  });

  it('decodes |XX escapes, including multi-byte UTF-8 and the pipe itself', () => {
    expect(unescapeValue('Büro |22Haupt|22')).toBe('Büro "Haupt"');
    expect(unescapeValue('a|7cb|7Cc')).toBe('a|b|c');
    expect(unescapeValue('|C3|BC')).toBe('ü');
    expect(unescapeValue('50|% |zz |')).toBe('50|% |zz |');
    expect(unescapeValue('|FF')).toBe('|FF'); // not text: kept as written
  });

  it('round-trips values through escape and parse', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 60 }), (v) => {
        const doc = parseKeyValueFile(encodeKeyValueText([['k', v]]), 4096, 'x');
        expect(kvGet(doc, 'k')).toBe(v);
      }),
      { numRuns: propertyRuns(300) },
    );
    expect(escapeValue('a"b|c\n')).toBe('a|22b|7Cc|0A');
  });

  it('accepts unquoted values, CRLF, comments, a BOM; lists unparsable lines', () => {
    const doc = parseKeyValueFile(enc('\uFEFF# c\r\n.virtualSSD = 1\r\nbroken line\r\nk = "unterminated\r\nq = "a"b"\r\n'), 1024, 'x');
    expect(kvGet(doc, '.virtualSSD')).toBe('1');
    expect(doc.invalidLines).toEqual([3, 4, 5]);
  });

  it('honours .encoding (windows-1252) and refuses bytes invalid in it or unknown sets', () => {
    const bytes = Buffer.concat([Buffer.from('.encoding = "windows-1252"\ndisplayName = "B'), Buffer.from([0xfc]), Buffer.from('ro"\n')]);
    expect(kvGet(parseKeyValueFile(bytes, 1024, 'x'), 'displayname')).toBe('Büro');
    expect(() => decodeConfigText(Buffer.from([0x61, 0xff, 0xfe]), 1024, 'x')).toThrow(/not valid UTF-8/);
    expect(() => decodeConfigText(enc('.encoding = "klingon"\n'), 1024, 'x')).toThrow(/unknown character set/);
  });

  it('refuses files over the bound before decoding', () => {
    expect(() => decodeConfigText(Buffer.alloc(2049), 2048, 'x')).toThrow(expect.objectContaining({ code: 'LIMIT_EXCEEDED' }));
  });

  it('any bytes: parsed or a typed error, never a crash', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 400 }), (b) => {
        try {
          parseKeyValueFile(b, 4096, 'x');
        } catch (err) {
          expect(isDeltaDiskError(err)).toBe(true);
        }
      }),
      { numRuns: propertyRuns(500) },
    );
  });
});
