/**
 * The repository's on-disk structures: round trips, and every damaged or hostile
 * variant ends in a typed error (never a crash or a huge allocation).
 */
import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DeltaDiskError } from '../../lib/index.js';
import { decodeDamageRecord, encodeDamageRecord } from '../../lib/format/damage-record.js';
import { decodeIndexFile, encodeIndexFile, indexNameOf } from '../../lib/format/index-file.js';
import { decodeManifest, encodeManifest, type Manifest } from '../../lib/format/manifest.js';
import { BlobKind, Compression, decodePackTail, encodePackTail, packNameOf, PACK_TRAILER_SIZE } from '../../lib/format/pack-header.js';
import { decodePrunePlan, encodePrunePlan } from '../../lib/format/prune-plan.js';
import { decodeRepoConfig, encodeRepoConfig } from '../../lib/format/repo-config.js';
import { decodeRepoLock, encodeRepoLock } from '../../lib/format/repo-lock.js';
import { decodeVerifyRecord, encodeVerifyRecord } from '../../lib/format/verify-record.js';
import { propertyRuns } from '../helpers/temp-dir.js';

const TYPED = ['REPO_CORRUPT', 'UNSUPPORTED_VERSION', 'LIMIT_EXCEEDED', 'LOCK_INVALID'];

function expectTyped(fn: () => unknown): void {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(DeltaDiskError);
    expect(TYPED).toContain((err as DeltaDiskError).code);
    return;
  }
  throw new Error('expected a typed error, got success');
}

function blobs(n: number) {
  return Array.from({ length: n }, (_, i) => ({
    hash: randomBytes(32),
    storedLength: 100 + i,
    rawLength: i % 2 === 0 ? 100 + i : 200 + i,
    kind: i === n - 1 ? BlobKind.LIST : BlobKind.DATA,
    compression: i % 2 === 0 ? Compression.NONE : Compression.DEFLATE,
  })).map((b) => (b.kind === BlobKind.LIST ? { ...b, storedLength: 64, rawLength: 64, compression: Compression.NONE } : b));
}

function manifest(): Manifest {
  return {
    id: randomBytes(16).toString('hex'),
    time: new Date().toISOString(),
    end: new Date().toISOString(),
    host: 'h',
    user: 'u',
    tags: ['nightly'],
    paths: ['/src'],
    entries: [
      { type: 'dir', path: 'src', mode: 0o755, mtimeMs: 1 },
      { type: 'file', path: 'src/a', mode: 0o644, mtimeMs: 2.5, size: 5, content: { count: 1, size: 5, chunkSize: 0, hashes: randomBytes(32) } },
      { type: 'file', path: 'src/empty', mode: 0o600, mtimeMs: 3, size: 0, content: { count: 0, size: 0, chunkSize: 0, hashes: Buffer.alloc(0) } },
      { type: 'symlink', path: 'src/l', mode: 0o777, mtimeMs: 4, target: 'a' },
      {
        type: 'chain',
        path: 'src/d.chain',
        mode: 0o644,
        mtimeMs: 5,
        chain: {
          diskId: 'abc',
          virtualSize: 1 << 20,
          blockSize: 65536,
          dedup: true,
          base: null,
          capture: { id: 'cap', name: 'deltadisk-backup-x', description: '', created: 't', parent: 'p1', content: { count: 16, size: 1 << 20, chunkSize: 65536, hashes: Buffer.alloc(16 * 32) } },
          points: [{ id: 'p1', name: 's1', description: 'first', created: 't0', parent: null, content: { count: 16, size: 1 << 20, chunkSize: 65536, hashes: Buffer.alloc(16 * 32) } }],
        },
      },
    ],
    summary: { files: 2, bytes: 5 },
  };
}

describe('pack header', () => {
  it('round-trips and names the pack by its tail', () => {
    const list = blobs(5);
    const tail = encodePackTail(list);
    const data = list.reduce((a, b) => a + b.storedLength, 0);
    const entries = decodePackTail(tail, data + tail.length);
    expect(entries.map((e) => e.hash.toString('hex'))).toEqual(list.map((b) => b.hash.toString('hex')));
    expect(entries[2]!.offset).toBe(list[0]!.storedLength + list[1]!.storedLength);
    expect(packNameOf(tail)).toMatch(/^[0-9a-f]{64}$/);
    // The nonce makes a pack with the same blobs a different pack.
    expect(packNameOf(encodePackTail(list))).not.toBe(packNameOf(tail));
  });

  it('refuses a size that the blobs do not fill, and every single bit flip', () => {
    const list = blobs(3);
    const tail = encodePackTail(list);
    const size = list.reduce((a, b) => a + b.storedLength, 0) + tail.length;
    expectTyped(() => decodePackTail(tail, size + 1));
    expectTyped(() => decodePackTail(tail, 10));
    expectTyped(() => decodePackTail(tail, 2 ** 40));
    for (let bit = 0; bit < tail.length * 8; bit++) {
      const t = Buffer.from(tail);
      t[bit >> 3]! ^= 1 << (bit & 7);
      // A flip inside the nonce changes only the pack's name, which the index catches.
      const inNonce = bit >> 3 >= tail.length - PACK_TRAILER_SIZE + 20 && bit >> 3 < tail.length - PACK_TRAILER_SIZE + 28;
      if (inNonce) expect(packNameOf(t)).not.toBe(packNameOf(tail));
      else expectTyped(() => decodePackTail(t, size));
    }
  });
});

describe('index file', () => {
  it('round-trips and checks its own name and every pack tail', () => {
    const list = blobs(4);
    const tail = encodePackTail(list);
    const size = list.reduce((a, b) => a + b.storedLength, 0) + tail.length;
    const bytes = encodeIndexFile([{ name: packNameOf(tail), size, tail }]);
    const name = indexNameOf(bytes);
    const back = decodeIndexFile(bytes, name);
    expect(back[0]!.tail.equals(tail)).toBe(true);
    expectTyped(() => decodeIndexFile(bytes, 'f'.repeat(64)));
    expectTyped(() => decodeIndexFile(encodeIndexFile([{ name: 'a'.repeat(64), size, tail }])));
    expectTyped(() => decodeIndexFile(encodeIndexFile([{ name: packNameOf(tail), size: size + 48, tail }])));
  });

  it('ends every truncation and random corruption in a typed error', () => {
    const list = blobs(6);
    const tail = encodePackTail(list);
    const size = list.reduce((a, b) => a + b.storedLength, 0) + tail.length;
    const bytes = encodeIndexFile([{ name: packNameOf(tail), size, tail }]);
    for (let n = 0; n < bytes.length; n++) expectTyped(() => decodeIndexFile(bytes.subarray(0, n)));
    fc.assert(
      fc.property(fc.integer({ min: 0, max: bytes.length - 1 }), fc.integer({ min: 1, max: 255 }), (at, x) => {
        const b = Buffer.from(bytes);
        b[at]! ^= x;
        expectTyped(() => decodeIndexFile(b));
      }),
      { numRuns: propertyRuns(300) },
    );
  });
});

describe('manifest', () => {
  it('round-trips every entry type', () => {
    const m = manifest();
    const back = decodeManifest(encodeManifest(m), m.id);
    expect(back.entries.map((e) => e.type)).toEqual(['dir', 'file', 'file', 'symlink', 'chain']);
    expect(back.entries[1]).toMatchObject({ path: 'src/a', size: 5, mtimeMs: 2.5 });
    expect(back.tags).toEqual(['nightly']);
    expectTyped(() => decodeManifest(encodeManifest(m), 'f'.repeat(32)));
  });

  it('refuses contents whose chunk count cannot hold their size, and cyclic chain points', () => {
    const m = manifest();
    const bad = { ...m, entries: [{ type: 'file' as const, path: 'a', mode: 0, mtimeMs: 0, size: 10, content: { count: 1, size: 10, chunkSize: 4096, hashes: randomBytes(64) } }] };
    expectTyped(() => decodeManifest(encodeManifest(bad)));
    const chain = m.entries[4]!;
    if (chain.type !== 'chain') throw new Error('fixture');
    const cyc = {
      ...m,
      entries: [{ ...chain, chain: { ...chain.chain, points: [{ ...chain.chain.points[0]!, parent: 'p2' }, { ...chain.chain.points[0]!, id: 'p2', parent: 'p1' }] } }],
    };
    expectTyped(() => decodeManifest(encodeManifest(cyc)));
  });

  it('ends random corruption in a typed error', () => {
    const bytes = encodeManifest(manifest());
    fc.assert(
      fc.property(fc.integer({ min: 0, max: bytes.length - 1 }), fc.integer({ min: 1, max: 255 }), (at, x) => {
        const b = Buffer.from(bytes);
        b[at]! ^= x;
        expectTyped(() => decodeManifest(b));
      }),
      { numRuns: propertyRuns(300) },
    );
  });
});

describe('small files', () => {
  it('config, lock, plan, verification and damage records round-trip and refuse damage', () => {
    const config = { id: 'a'.repeat(32), created: 'now', chunker: { gearSeed: 'b'.repeat(32), min: 1024, avg: 4096, max: 16384 }, fixedChunkSize: 65536, packSize: 1 << 24 };
    expect(decodeRepoConfig(encodeRepoConfig(config))).toEqual(config);
    expectTyped(() => decodeRepoConfig(Buffer.from(encodeRepoConfig(config).toString().replace('65536', '65537'))));
    expectTyped(() => decodeRepoConfig(Buffer.from('{"format":"deltadisk-repository","version":2}')));
    const lock = { kind: 'shared' as const, purpose: 'p', host: 'h', pid: 1, bootId: 'b', netns: 'n', created: 'c', refreshed: new Date().toISOString(), token: 'c'.repeat(32) };
    expect(decodeRepoLock(encodeRepoLock(lock))).toEqual(lock);
    expectTyped(() => decodeRepoLock(Buffer.from('{garbage')));
    const plan = { id: 'd'.repeat(32), created: 'x', condemned: ['e'.repeat(64)], temps: ['index/x.tmp-1'] };
    expect(decodePrunePlan(encodePrunePlan(plan))).toEqual(plan);
    const rec = { backup: 'f'.repeat(32), time: 't', problems: ['p'] };
    expect(decodeVerifyRecord(encodeVerifyRecord(rec))).toEqual(rec);
    const dmg = { pack: '1'.repeat(64), time: 't', reason: 'missing', blobs: ['2'.repeat(64)] };
    expect(decodeDamageRecord(encodeDamageRecord(dmg))).toEqual(dmg);
    const b = encodePrunePlan(plan);
    b[b.length - 1]! ^= 1;
    expectTyped(() => decodePrunePlan(b));
  });
});
