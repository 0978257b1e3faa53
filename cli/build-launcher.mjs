/**
 * Builds the executable, `dist/deltadisk.cjs`, from the compiled launcher (run by
 * `npm run build` after tsc).
 *
 * Its first two lines run Node with the options of cli/node-flags.ts, portably: an
 * `#!/usr/bin/env -S node <options>` line fails on BusyBox (Alpine, and Node's own
 * Alpine images), OpenBSD and NetBSD, whose env has no -S. Instead /bin/sh reads
 *
 *     #!/bin/sh
 *     ":" //; exec node <options> "$0" "$@"
 *
 * and replaces itself with Node, which skips the #! line and reads the second as a
 * string and a comment. Bundled as CommonJS: as an ES module the launcher started
 * ~7-10 ms later (Node's ES module loader, each builtin imported through it).
 */
import { chmodSync } from 'node:fs';
import { build } from 'esbuild';
import { NODE_FLAGS } from '../dist/cli/node-flags.js';

const out = 'dist/deltadisk.cjs';
await build({
  entryPoints: ['dist/cli/launcher.js'],
  bundle: true,
  platform: 'node',
  format: 'cjs',
  target: 'node20',
  packages: 'external',
  define: { 'import.meta.dirname': '__dirname' },
  banner: { js: `#!/bin/sh\n":" //; exec node ${NODE_FLAGS.join(' ')} "$0" "$@"` },
  outfile: out,
  logLevel: 'warning',
});
chmodSync(out, 0o755);
