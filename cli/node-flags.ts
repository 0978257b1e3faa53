/**
 * The V8 options the `deltadisk` executable runs Node with (its first lines name
 * them: cli/build-launcher.mjs), and the benchmarks run under them too, so they
 * time what a user runs.
 *
 * `--initial-old-space-size=64`: V8 starts marking the old generation whenever the
 * room left under its limit is smaller than the young generation. A backup keeps
 * ~10 MB live and V8 sets the limit at ~3x that; once the young generation has
 * grown (any backup of some size grows it), that room is always too small, and V8
 * marks and compacts back to back for as long as the process runs. An incremental
 * VM backup spent 15-35 ms of its ~200 ms that way (3-4 full collections
 * reclaiming 1-3 MB each). With a 64 MiB initial limit it runs on scavenges alone;
 * V8 sizes the limit from the live heap as usual after the first full collection.
 * Library users who run backups in a long-lived process can pass the same option.
 */
export const NODE_FLAGS: readonly string[] = ['--initial-old-space-size=64'];
