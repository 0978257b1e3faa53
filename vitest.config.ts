import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

const here = (p: string): string => fileURLToPath(new URL(p, import.meta.url));

export default defineConfig({
  resolve: {
    // Tests may import the package by its public names, as users do.
    alias: [
      { find: /^deltadisk\/testing$/, replacement: here('./lib/testing/index.ts') },
      { find: /^deltadisk$/, replacement: here('./lib/index.ts') },
    ],
  },
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/global-setup.ts'],
    setupFiles: ['test/setup.ts'],
    testTimeout: 180_000,
    hookTimeout: 180_000,
    pool: 'forks',
    // Two files at once even on two cores (vitest's default is one fewer than the
    // cores): most of a file's time is spent waiting on fsync and on the processes it
    // starts, so the suite ran in ~9.3 minutes instead of ~12.7 on the 2-core CI
    // machine. Speed is measured in bench/, alone; the few time bounds in tests are
    // seconds wide.
    maxWorkers: 2,
  },
});
