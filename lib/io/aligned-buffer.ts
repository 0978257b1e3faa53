/**
 * Page-aligned buffers, for direct I/O (O_DIRECT).
 *
 * A direct transfer needs its memory, its file offset and its length aligned to the
 * device's logical block size (512 B or 4 KiB; {@link DIRECT_ALIGN} covers both).
 * Node cannot tell a buffer's address, and its own buffers come from malloc, which
 * aligns them to 16 bytes. A WebAssembly memory is mapped by V8 on a page boundary,
 * so a view of one at a multiple of 4 KiB is aligned: this module makes buffers
 * that way and remembers their backing stores, which is how
 * {@link isDirectAligned} knows a buffer's alignment without seeing its address.
 *
 * Where WebAssembly is unavailable (`--jitless`) or the mapping fails (address
 * space exhausted), `alignedBuffer` returns an ordinary buffer, which
 * `isDirectAligned` then rejects: callers write it through the page cache, so
 * nothing but speed ever depends on getting aligned memory.
 */

/** The alignment of a direct transfer's memory, offset and length. */
export const DIRECT_ALIGN = 4096;

/** `n` rounded down, and up, to a multiple of DIRECT_ALIGN. */
export const alignDown = (n: number): number => n - (n % DIRECT_ALIGN);
export const alignUp = (n: number): number => alignDown(n + DIRECT_ALIGN - 1);

const WASM_PAGE = 65536;
/** A WebAssembly memory holds at most 65536 pages (4 GiB). */
const MAX_WASM_PAGES = 65536;

interface WasmMemoryConstructor {
  new (descriptor: { initial: number; maximum: number }): { readonly buffer: ArrayBuffer };
}

const WasmMemory = (globalThis as { WebAssembly?: { Memory?: WasmMemoryConstructor } }).WebAssembly?.Memory;
const alignedStores = new WeakSet<ArrayBufferLike>();

/** A buffer of `size` bytes (contents zero), page-aligned when the platform allows. */
export function alignedBuffer(size: number): Buffer {
  const pages = Math.ceil(size / WASM_PAGE);
  if (WasmMemory !== undefined && pages > 0 && pages <= MAX_WASM_PAGES) {
    try {
      const memory = new WasmMemory({ initial: pages, maximum: pages });
      alignedStores.add(memory.buffer);
      return Buffer.from(memory.buffer, 0, size);
    } catch {
      // No address space for another memory: an ordinary buffer does, more slowly.
    }
  }
  return Buffer.alloc(size);
}

/** Whether `b` starts on a {@link DIRECT_ALIGN} boundary of memory from {@link alignedBuffer}. */
export function isDirectAligned(b: Uint8Array): boolean {
  return alignedStores.has(b.buffer) && b.byteOffset % DIRECT_ALIGN === 0;
}

/**
 * Whether a direct transfer of `buffers` at `position` meets the kernel's rules:
 * every buffer aligned in memory and a multiple of {@link DIRECT_ALIGN} long, and the
 * position aligned. The in-memory file systems enforce it, as Linux does with EINVAL.
 */
export function isDirectTransfer(buffers: readonly Uint8Array[], position: number): boolean {
  return position % DIRECT_ALIGN === 0 && buffers.every((b) => isDirectAligned(b) && b.length % DIRECT_ALIGN === 0);
}
