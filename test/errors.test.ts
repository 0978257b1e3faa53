/**
 * docs/ERRORS.md and ERROR_CODES are one list: every code has a `## CODE` heading,
 * every heading is a code, in the same order; and DeltaDiskError carries its fields.
 */
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { DeltaDiskError, ERROR_CODES, fromSystemError, isDeltaDiskError } from '../lib/errors.js';

const doc = fs.readFileSync(path.resolve(import.meta.dirname, '../docs/ERRORS.md'), 'utf8');
const headings = [...doc.matchAll(/^## (.+)$/gm)].map((m) => m[1]!.trim());

describe('docs/ERRORS.md', () => {
  it('has a heading for every code and a code for every heading, in the same order', () => {
    expect(headings).toEqual([...ERROR_CODES]);
  });

  it('documents each code with some text and an exit code', () => {
    const sections = doc.split(/^## /m).slice(1);
    for (const s of sections) {
      const [code, ...body] = s.split('\n');
      const text = body.join('\n').trim();
      expect(text.length, code).toBeGreaterThan(20);
      expect(text, code).toMatch(/Exit \d+\./);
    }
  });
});

describe('DeltaDiskError', () => {
  it('carries its code and structured fields, and serialises them', () => {
    const cause = new Error('low level');
    const e = new DeltaDiskError('LOCKED', 'busy', { path: '/d', offset: 1, block: 2, layer: 'l', holder: { pid: 3 }, cause });
    expect(e).toBeInstanceOf(Error);
    expect(e.name).toBe('DeltaDiskError');
    expect(e.cause).toBe(cause);
    expect(e.toJSON()).toEqual({ code: 'LOCKED', message: 'busy', path: '/d', offset: 1, block: 2, layer: 'l', holder: { pid: 3 } });
    expect(new DeltaDiskError('NOT_OPEN', 'closed').toJSON()).toEqual({ code: 'NOT_OPEN', message: 'closed' });
    expect(isDeltaDiskError(e)).toBe(true);
    expect(isDeltaDiskError(e, 'LOCKED')).toBe(true);
    expect(isDeltaDiskError(e, 'NOT_OPEN')).toBe(false);
    expect(isDeltaDiskError(new Error('x'))).toBe(false);
  });

  it('fromSystemError maps errno codes and passes DeltaDiskErrors through', () => {
    const sys = (code: string) => Object.assign(new Error(code), { code });
    expect(fromSystemError(sys('ENOSPC'), '/f').code).toBe('NO_SPACE');
    expect(fromSystemError(sys('EDQUOT')).code).toBe('NO_SPACE');
    expect(fromSystemError(sys('ENOENT'), '/f')).toMatchObject({ code: 'NOT_FOUND', path: '/f' });
    expect(fromSystemError(sys('EIO')).code).toBe('IO_ERROR');
    expect(fromSystemError('a string').code).toBe('IO_ERROR');
    const mine = new DeltaDiskError('TRUNCATED', 't');
    expect(fromSystemError(mine)).toBe(mine);
  });
});
