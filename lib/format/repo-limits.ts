/**
 * Hard caps of the backup repository format (docs/FORMAT.md, "Repository format").
 *
 * Every length and count read from a repository file is checked against these before
 * anything is allocated from it, so a hostile or damaged file costs a typed error,
 * never a huge Buffer. Raising one is a format change.
 */
export const REPO_FORMAT_VERSION = 1;

const KiB = 1024;
const MiB = 1024 * KiB;

/** A pack is sealed once its blobs reach this size. */
export const PACK_TARGET_SIZE = 16 * MiB;
/** Largest pack file accepted (offsets inside a pack are u32). */
export const MAX_PACK_SIZE = 1024 * MiB;
/** Blobs in one pack. */
export const MAX_PACK_BLOBS = 65536;
/** Largest blob, raw or stored. */
export const MAX_BLOB_SIZE = 8 * MiB;

/** Index files: size and packs listed in one file. */
export const MAX_INDEX_FILE = 64 * MiB;
export const MAX_INDEX_PACKS = 65536;
/** A writer starts a new index file after this many packs. */
export const INDEX_PACKS_PER_FILE = 4096;

/** Backup manifests. */
export const MAX_MANIFEST_BYTES = 64 * MiB;
export const MAX_ENTRIES = 262144;
export const MAX_PATH_BYTES = 4096;
export const MAX_PATH_DEPTH = 256;
export const MAX_TAGS = 64;
export const MAX_TAG_LENGTH = 128;
export const MAX_TEXT = 4096;

/** Chunk lists: hashes held in the manifest itself, and per list blob. */
export const INLINE_HASHES = 64;
export const LIST_BLOB_HASHES = 16384;
/** Chunks of one content (a file or a point in time of a disk). */
export const MAX_CHUNKS = 2 ** 32;
/** List blobs of one content. */
export const MAX_LISTS = Math.ceil(MAX_CHUNKS / LIST_BLOB_HASHES);
/** Points in time of one chain entry (as many as a disk has snapshots, plus one). */
export const MAX_POINTS = 4097;

/** Small files. */
export const MAX_CONFIG_BYTES = 64 * KiB;
export const MAX_LOCK_BYTES = 64 * KiB;
export const MAX_PLAN_BYTES = 64 * MiB;
export const MAX_VERIFY_BYTES = 16 * MiB;

/** Chunking. */
export const CDC_MIN = 256 * KiB;
export const CDC_AVG = 1 * MiB;
export const CDC_MAX = 8 * MiB;
export const FIXED_CHUNK_SIZE = 1 * MiB;
export const MIN_FIXED_CHUNK = 4 * KiB;
/** Chains are chunked at their block size, but never finer than this. */
export const CHAIN_MIN_CHUNK = 64 * KiB;

export const HASH_SIZE = 32;
/** The reserved hash naming a chunk of zeros in fixed-size content (never stored). */
export const ZERO_HASH: Buffer = Buffer.alloc(HASH_SIZE);
