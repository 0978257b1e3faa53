/**
 * The limits in lib/format/limits.ts are a format contract: docs/FORMAT.md lists
 * them, and raising one is a format change. This pins the two together.
 */
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import * as L from '../../lib/format/limits.js';
import { MAX_OP_BYTES } from '../../lib/format/op-state.js';

const formatDoc = fs.readFileSync(path.resolve(import.meta.dirname, '../../docs/FORMAT.md'), 'utf8');

function limitRow(name: string): string {
  const row = formatDoc.split('\n').find((l) => l.startsWith(`| ${name} |`));
  if (row === undefined) throw new Error(`docs/FORMAT.md has no limits row "${name}"`);
  return row.split('|')[2]!.trim();
}

describe('format limits', () => {
  it('docs/FORMAT.md states the limits the code enforces', () => {
    expect(limitRow('block size')).toMatch(/^4 KiB … 1 MiB, a power of two \(default 64 KiB\)$/);
    expect([L.MIN_BLOCK_SIZE, L.MAX_BLOCK_SIZE, L.DEFAULT_BLOCK_SIZE]).toEqual([4096, 1 << 20, 65536]);
    expect(limitRow('virtual size')).toContain('2^50');
    expect(L.MAX_VIRTUAL_SIZE).toBe(2 ** 50);
    expect(Number(limitRow('layers in a disk'))).toBe(L.MAX_LAYERS);
    expect(Number(limitRow('path depth (base to a leaf)'))).toBe(L.MAX_DEPTH);
    expect(Number(limitRow('snapshots'))).toBe(L.MAX_SNAPSHOTS);
    expect(limitRow('snapshot name')).toContain(`${L.MAX_NAME_LENGTH} characters`);
    expect(limitRow('snapshot description')).toBe(`${L.MAX_DESCRIPTION_LENGTH} characters`);
    expect(limitRow('descriptor file')).toBe(`${L.MAX_DESCRIPTOR_BYTES / 2 ** 20} MiB`);
    expect(limitRow('operation state file')).toBe(`${MAX_OP_BYTES / 1024} KiB`);
    expect(limitRow('record payload')).toBe(`${L.MAX_RECORD_PAYLOAD / 2 ** 20} MiB`);
    expect(limitRow('map segment')).toBe(`${L.MAX_SEGMENT_ENTRIES} entries`);
  });

  it('block sizes are the powers of two from 4 KiB to 1 MiB, nothing else', () => {
    const valid = [12, 13, 14, 15, 16, 17, 18, 19, 20].map((e) => 2 ** e);
    for (const v of valid) expect(L.isValidBlockSize(v), String(v)).toBe(true);
    for (const v of [0, 1, 2048, 4095, 4097, 6144, 2 ** 21, -4096, 4096.5, Number.NaN, Number.POSITIVE_INFINITY, 2 ** 53]) {
      expect(L.isValidBlockSize(v), String(v)).toBe(false);
    }
  });

  it('powers of two beyond 32 bits are not mistaken for valid by bit tricks', () => {
    expect(L.isPowerOfTwo(2 ** 32)).toBe(true);
    expect(L.isPowerOfTwo(2 ** 32 + 4096)).toBe(false);
    expect(L.isPowerOfTwo(3 * 2 ** 32)).toBe(false);
  });

  it('block counts stay exact at the largest disk and smallest block', () => {
    expect(Number.isSafeInteger(L.MAX_VIRTUAL_SIZE / L.MIN_BLOCK_SIZE)).toBe(true);
    expect(L.LOG_START).toBe(2 * L.HEADER_SLOT_SIZE);
  });
});
