/**
 * Prune running at the same time as backups, as real processes: backups keep
 * reusing chunks that earlier (forgotten) backups also held, while forget and prune
 * run in a loop beside them. No backup may fail, and afterwards every backup left
 * restores byte for byte: prune never deleted a chunk a running backup went on to
 * reference.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { cli, jsonLines, seeded } from '../helpers/repo-cli.js';
import { snapshotTree } from '../helpers/repo.js';
import { propertyRuns, tempDir } from '../helpers/temp-dir.js';

const KiB = 1024;
let dir: string;
let cleanup: () => void;

beforeEach(() => ({ dir, cleanup } = tempDir('deltadisk-concurrent-')));
afterEach(() => cleanup());

/** Version v: chunks drawn from a small pool in an order of v's own, so later backups reuse earlier data. */
function version(src: string, v: number): Record<string, string> {
  fs.rmSync(src, { recursive: true, force: true });
  fs.mkdirSync(src, { recursive: true });
  const parts: Buffer[] = [];
  for (let k = 0; k < 6; k++) parts.push(seeded(`pool${(v * 7 + k * 3) % 10}`, 256 * KiB));
  fs.writeFileSync(path.join(src, 'data.img'), Buffer.concat(parts));
  fs.writeFileSync(path.join(src, `only-${v}`), seeded(`unique${v}`, 128 * KiB));
  return snapshotTree(src);
}

describe('prune concurrent with backups', () => {
  it('never deletes data a backup running beside it references', async () => {
    const repo = path.join(dir, 'repo');
    expect((await cli(['repo', 'init', repo, '--pack-size', '1M', '--chunk-size', '256K'])).code).toBe(0);
    const trees = new Map<number, Record<string, string>>();
    const rounds = propertyRuns(8);
    let backupsDone = false;
    const backups = (async () => {
      try {
        for (let v = 0; v < rounds; v++) {
          const src = path.join(dir, 'src');
          trees.set(v, version(src, v));
          const r = await cli(['backup', src, '--repo', repo, '--tag', `v${v}`, '--retry-lock', '60']);
          expect(r.code, r.stderr).toBe(0);
        }
      } finally {
        backupsDone = true;
      }
    })();
    let deleted = 0;
    let prunes = 0;
    const pruner = (async () => {
      while (!backupsDone) {
        const f = await cli(['forget', '--repo', repo, '--keep-last', '2', '--yes', '--retry-lock', '60']);
        expect(f.code, f.stderr).toBe(0);
        const p = await cli(['prune', '--repo', repo, '--yes', '--json', '--repack-threshold', '0.01', '--max-wait', '60', '--retry-lock', '60']);
        expect([0, 3], p.stderr).toContain(p.code);
        const s = jsonLines(p.stdout).find((l) => l.message_type === 'summary');
        deleted += Number(s?.packs_deleted ?? 0);
        prunes++;
      }
    })();
    await Promise.all([backups, pruner]);
    expect(prunes).toBeGreaterThan(0);
    const check = await cli(['check', '--repo', repo, '--read-data']);
    expect([0, 3], check.stdout + check.stderr).toContain(check.code);
    const list = JSON.parse((await cli(['snapshots', '--repo', repo, '--json'])).stdout) as { id: string; tags: string[] }[];
    expect(list.length).toBeGreaterThanOrEqual(2);
    for (const b of list) {
      const out = path.join(dir, `out-${b.id}`);
      const r = await cli(['restore', b.id, '--repo', repo, '--target', out, '--verify']);
      expect(r.code, r.stderr).toBe(0);
      expect(snapshotTree(path.join(out, 'src'))).toEqual(trees.get(Number(b.tags[0]!.slice(1))));
    }
    // And a final prune, with nothing running, leaves a clean repository.
    expect((await cli(['prune', '--repo', repo, '--yes', '--repack-threshold', '0.01'])).code).toBe(0);
    expect((await cli(['check', '--repo', repo])).code).toBe(0);
    console.log(`prunes ${prunes}, packs deleted ${deleted}`);
    expect(deleted).toBeGreaterThan(0);
  });
});
