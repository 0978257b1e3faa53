/**
 * alignedBuffer and isDirectAligned: buffers come zeroed, of the length asked for,
 * and only their page-aligned views count as aligned. That the memory is really
 * aligned is proven by the kernel (file-system-conformance: a direct write from it).
 */
import { describe, expect, it } from 'vitest';
import { alignedBuffer, DIRECT_ALIGN, isDirectAligned, isDirectTransfer } from '../../lib/io/aligned-buffer.js';

describe('alignedBuffer', () => {
  it('is zeroed, exactly as long as asked, and aligned only at page offsets', () => {
    for (const size of [1, DIRECT_ALIGN, 65536, 65537, 3 * 1024 * 1024 + 5]) {
      const b = alignedBuffer(size);
      expect(b.length).toBe(size);
      expect(b.every((x) => x === 0)).toBe(true);
      expect(isDirectAligned(b)).toBe(true);
    }
    const b = alignedBuffer(4 * DIRECT_ALIGN);
    expect(isDirectAligned(b.subarray(DIRECT_ALIGN))).toBe(true);
    expect(isDirectAligned(b.subarray(512))).toBe(false);
    expect(isDirectAligned(b.subarray(1))).toBe(false);
  });

  it('does not take other buffers for aligned, whatever their offset', () => {
    expect(isDirectAligned(Buffer.alloc(DIRECT_ALIGN))).toBe(false);
    expect(isDirectAligned(Buffer.allocUnsafeSlow(2 * DIRECT_ALIGN).subarray(DIRECT_ALIGN))).toBe(false);
    expect(isDirectAligned(new Uint8Array(DIRECT_ALIGN))).toBe(false);
  });

  it('isDirectTransfer wants aligned memory, lengths and position', () => {
    const b = alignedBuffer(3 * DIRECT_ALIGN);
    expect(isDirectTransfer([b.subarray(0, DIRECT_ALIGN), b.subarray(DIRECT_ALIGN)], 8192)).toBe(true);
    expect(isDirectTransfer([], 0)).toBe(true);
    expect(isDirectTransfer([b.subarray(0, DIRECT_ALIGN)], 512)).toBe(false);
    expect(isDirectTransfer([b.subarray(0, 100)], 0)).toBe(false);
    expect(isDirectTransfer([b.subarray(DIRECT_ALIGN), Buffer.alloc(DIRECT_ALIGN)], 0)).toBe(false);
  });
});
