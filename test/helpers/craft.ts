/**
 * Crafting repositories with arbitrary (hostile) backups: blobs are stored through the
 * real pack writer (optionally under a wrong hash or with lying lengths), the manifest
 * is encoded directly, so restore sees exactly what an attacker could put there.
 */
import { createHash, randomBytes } from 'node:crypto';
import type { Content, Entry, Repository } from '../../lib/index.js';
import { encodeManifest } from '../../lib/format/manifest.js';
import { BlobKind, Compression } from '../../lib/format/pack-header.js';
import { PackWriter } from '../../lib/repo/pack-writer.js';

export interface CraftedBlob {
  readonly hash: Buffer;
  readonly stored: Buffer;
  readonly rawLength: number;
  readonly compression?: Compression;
}

/** A content of one chunk holding `data` (variable-size chunking). */
export function contentOf(data: Buffer, hash = createHash('sha256').update(data).digest()): { content: Content; blob: CraftedBlob } {
  return { content: { count: data.length === 0 ? 0 : 1, size: data.length, chunkSize: 0, hashes: data.length === 0 ? Buffer.alloc(0) : hash }, blob: { hash, stored: data, rawLength: data.length } };
}

/** Stores `blobs` as they are and publishes a backup of `entries`; returns its id. */
export async function craftBackup(repo: Repository, entries: readonly Entry[], blobs: readonly CraftedBlob[] = []): Promise<string> {
  const index = await repo.loadIndex();
  const writer = new PackWriter(repo.backend, index, { packSize: repo.config.packSize });
  for (const b of blobs) await writer.copy(b.hash, b.stored, b.rawLength, BlobKind.DATA, b.compression ?? Compression.NONE);
  await writer.flush();
  const id = randomBytes(16).toString('hex');
  const now = new Date().toISOString();
  const bytes = encodeManifest({ id, time: now, end: now, host: 'crafted', user: '', tags: [], paths: ['/crafted'], entries, summary: {} });
  await repo.backend.write('snapshot', id, [bytes], 'create');
  return id;
}
