/**
 * Hard caps on every size and count read from disk or accepted from a caller.
 *
 * A value from a file is checked against these before anything is allocated from
 * it, so a hostile header costs a LIMIT_EXCEEDED error, not a 4 GiB Buffer.
 * docs/FORMAT.md lists them; raising one is a format change.
 */
export const MIN_BLOCK_SIZE = 4096;
export const MAX_BLOCK_SIZE = 1024 * 1024;
export const DEFAULT_BLOCK_SIZE = 64 * 1024;

/** 1 PiB: block counts stay far inside Number.MAX_SAFE_INTEGER at every block size. */
export const MAX_VIRTUAL_SIZE = 2 ** 50;

/** Layers in one disk's tree, and the longest base-to-leaf path through it. */
export const MAX_LAYERS = 4096;
export const MAX_DEPTH = 512;
export const MAX_SNAPSHOTS = 4096;

/** A base image path, as qcow2 bounds its backing file name. */
export const MAX_BASE_PATH = 1023;
export const MAX_DESCRIPTOR_BYTES = 8 * 1024 * 1024;
export const MAX_NAME_LENGTH = 255;
export const MAX_DESCRIPTION_LENGTH = 4096;

/** Delta file: two header slots of this size precede the log. */
export const HEADER_SLOT_SIZE = 4096;
export const LOG_START = 2 * HEADER_SLOT_SIZE;

/**
 * The log is padded to a multiple of this at the end of every flush and after every
 * map segment, so no later write touches a sector holding acknowledged records
 * (4 KiB covers drives with 512 B and with 4 KiB sectors).
 */
export const LOG_ALIGN = 4096;

/** A map segment lists at most this many records. */
export const MAX_SEGMENT_ENTRIES = 65536;
/** Largest record payload: a block, or a map segment at its cap. */
export const MAX_RECORD_PAYLOAD = 8 * 1024 * 1024;

/** Largest file offset we accept anywhere (the largest safe integer below 2^53). */
export const MAX_FILE_OFFSET = Number.MAX_SAFE_INTEGER;

/** Largest single read or write request accepted by the API. */
export const MAX_IO_LENGTH = 256 * 1024 * 1024;

export function isPowerOfTwo(n: number): boolean {
  // Not `n & (n - 1)`: bitwise operators truncate to 32 bits, so 2^32 + 4096 would pass.
  return Number.isSafeInteger(n) && n > 0 && 2 ** Math.round(Math.log2(n)) === n;
}

export function isValidBlockSize(n: number): boolean {
  return isPowerOfTwo(n) && n >= MIN_BLOCK_SIZE && n <= MAX_BLOCK_SIZE;
}
