/**
 * Makes the harness runnable by child processes (SIGKILL runs, lock races).
 *
 * The suite's global setup builds lib/ into dist/lib; this transpiles the harness
 * modules next to it, into dist/test/harness, keeping the source layout so that
 * their relative imports of ../../lib/… resolve to the built library. Types were
 * checked by `npm run typecheck`; here they are only stripped.
 */
import fs from 'node:fs';
import path from 'node:path';
import ts from 'typescript';

const ROOT = path.resolve(import.meta.dirname, '../..');

/** Transpiles test/harness/*.ts (tests excluded); returns the output directory. */
export function buildHarness(): string {
  const src = path.join(ROOT, 'test/harness');
  const out = path.join(ROOT, 'dist/test/harness');
  if (!fs.existsSync(path.join(ROOT, 'dist/lib/index.js'))) throw new Error('dist/lib is missing: the global setup builds it');
  fs.mkdirSync(out, { recursive: true });
  for (const name of fs.readdirSync(src)) {
    if (!name.endsWith('.ts') || name.endsWith('.test.ts') || name.endsWith('.d.ts')) continue;
    const code = fs.readFileSync(path.join(src, name), 'utf8');
    const js = ts.transpileModule(code, {
      compilerOptions: { module: ts.ModuleKind.ES2022, target: ts.ScriptTarget.ES2022, verbatimModuleSyntax: true },
      fileName: name,
    }).outputText;
    const target = path.join(out, name.replace(/\.ts$/, '.js'));
    // Concurrent test files may build at once: write a temp file, then rename.
    const tmp = `${target}.${process.pid}.tmp`;
    fs.writeFileSync(tmp, js);
    fs.renameSync(tmp, target);
  }
  return out;
}
