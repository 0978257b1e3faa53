/**
 * The files of one moment as CrashFS models them, and the operations that change
 * them: inodes (data and size) plus directory listings, each operation applicable
 * on its own, so a crash state can replay any subset of them in recording order.
 * A torn write leaves each sector it touches old, new or garbage.
 */
import path from 'node:path';
import { truncateTo, writeAt } from '../../lib/io/memory-file-system.js';
import type { Rng } from './rng.js';

export interface Inode {
  data: Uint8Array;
  size: number;
}

export type Entry = { readonly kind: 'file'; readonly ino: number } | { readonly kind: 'dir' };

/** One recorded operation. Paths of directories are absolute and normalised. */
export type CrashOp =
  | { readonly k: 'write'; readonly ino: number; readonly pos: number; readonly data: Uint8Array; readonly path: string }
  | { readonly k: 'truncate'; readonly ino: number; readonly size: number; readonly path: string }
  | { readonly k: 'datasync'; readonly ino: number; readonly path: string }
  | { readonly k: 'create'; readonly dir: string; readonly name: string; readonly ino: number }
  | { readonly k: 'mkdir'; readonly dir: string; readonly name: string }
  | { readonly k: 'rmdir'; readonly dir: string; readonly name: string }
  | { readonly k: 'rename'; readonly fromDir: string; readonly fromName: string; readonly toDir: string; readonly toName: string; readonly entry: Entry }
  | { readonly k: 'link'; readonly dir: string; readonly name: string; readonly ino: number }
  | { readonly k: 'unlink'; readonly dir: string; readonly name: string; readonly ino: number }
  | { readonly k: 'syncdir'; readonly dir: string };

export type CrashPolicy =
  | { readonly kind: 'keep-all' }
  | { readonly kind: 'drop-all' }
  /** Keep the first `keep` pending operations in recording order, drop the rest. */
  | { readonly kind: 'prefix'; readonly keep: number }
  | {
      readonly kind: 'random';
      readonly seed: number;
      readonly sectorSize: 512 | 4096;
      readonly tearScope: 'sector' | 'range';
      /** Probability that a pending operation is kept whole (default 0.4) … */
      readonly pKeep?: number;
      /** … or, for a write, torn (default 0.3); otherwise it is dropped. */
      readonly pTear?: number;
    };

export function describePolicy(p: CrashPolicy): string {
  switch (p.kind) {
    case 'random':
      return `random(seed ${p.seed}, ${p.sectorSize} B sectors, tear ${p.tearScope})`;
    case 'prefix':
      return `prefix(${p.keep})`;
    default:
      return p.kind;
  }
}

/** The files and directories of one moment: inodes plus directory listings. */
export class Image {
  readonly inodes = new Map<number, Inode>();
  readonly dirs = new Map<string, Map<string, Entry>>();

  constructor() {
    this.dirs.set('/', new Map());
  }

  clone(): Image {
    const c = new Image();
    c.dirs.clear();
    for (const [ino, n] of this.inodes) c.inodes.set(ino, { data: n.data.slice(0, n.size), size: n.size });
    for (const [d, entries] of this.dirs) c.dirs.set(d, new Map(entries));
    return c;
  }

  inode(ino: number): Inode {
    let n = this.inodes.get(ino);
    if (n === undefined) {
      n = { data: new Uint8Array(0), size: 0 };
      this.inodes.set(ino, n);
    }
    return n;
  }

  /** Applies one operation (as the running program saw it). */
  apply(op: CrashOp): void {
    switch (op.k) {
      case 'write':
        writeAt(this.inode(op.ino), op.data, op.pos);
        return;
      case 'truncate':
        truncateTo(this.inode(op.ino), op.size);
        return;
      case 'create':
        this.inode(op.ino);
        this.#entries(op.dir)?.set(op.name, { kind: 'file', ino: op.ino });
        return;
      case 'mkdir': {
        const full = path.join(op.dir, op.name);
        this.#entries(op.dir)?.set(op.name, { kind: 'dir' });
        if (!this.dirs.has(full)) this.dirs.set(full, new Map());
        return;
      }
      case 'rmdir':
        this.#entries(op.dir)?.delete(op.name);
        this.dirs.delete(path.join(op.dir, op.name));
        return;
      case 'rename': {
        const from = this.#entries(op.fromDir);
        const cur = from?.get(op.fromName);
        if (cur !== undefined && sameEntry(cur, op.entry)) from!.delete(op.fromName);
        this.#entries(op.toDir)?.set(op.toName, op.entry);
        return;
      }
      case 'link':
        this.#entries(op.dir)?.set(op.name, { kind: 'file', ino: op.ino });
        return;
      case 'unlink': {
        const entries = this.#entries(op.dir);
        const cur = entries?.get(op.name);
        if (cur !== undefined && cur.kind === 'file' && cur.ino === op.ino) entries!.delete(op.name);
        return;
      }
      case 'datasync':
      case 'syncdir':
        return;
    }
  }

  #entries(dir: string): Map<string, Entry> | undefined {
    return this.dirs.get(dir);
  }

  /** Regular files reachable by name, as path → bytes (for diagnostics and tests). */
  files(): Map<string, Uint8Array> {
    const out = new Map<string, Uint8Array>();
    for (const [d, entries] of this.dirs) {
      for (const [name, e] of entries) {
        if (e.kind === 'file') {
          const n = this.inodes.get(e.ino);
          out.set(path.join(d, name), n === undefined ? new Uint8Array(0) : n.data.slice(0, n.size));
        }
      }
    }
    return out;
  }
}

export function sameEntry(a: Entry, b: Entry): boolean {
  return a.kind === b.kind && (a.kind === 'dir' || a.ino === (b as { ino: number }).ino);
}

/** Which directories an entry operation changes (it is durable once all are synced). */
export function dirsOf(op: CrashOp): string[] {
  switch (op.k) {
    case 'create':
    case 'mkdir':
    case 'rmdir':
    case 'link':
    case 'unlink':
      return [op.dir];
    case 'rename':
      return op.fromDir === op.toDir ? [op.toDir] : [op.fromDir, op.toDir];
    default:
      return [];
  }
}

export function isSync(op: CrashOp): boolean {
  return op.k === 'datasync' || op.k === 'syncdir';
}

/** Applies `op` torn: every sector it touches ends old, new or garbage (at least one garbage). */
export function tearWrite(image: Image, op: Extract<CrashOp, { k: 'write' }>, rng: Rng, policy: Extract<CrashPolicy, { kind: 'random' }>): void {
  const n = image.inode(op.ino);
  const start = op.pos;
  const end = op.pos + op.data.length;
  const S = policy.sectorSize;
  const firstSector = Math.floor(start / S);
  const lastSector = Math.floor((end - 1) / S);
  const old = new Uint8Array(end - start);
  old.set(n.data.subarray(start, Math.min(end, n.size)));
  writeAt(n, op.data, op.pos);
  const sectors = lastSector - firstSector + 1;
  const choices: ('old' | 'new' | 'garbage')[] = [];
  for (let s = 0; s < sectors; s++) choices.push(rng.pick(['old', 'new', 'garbage'] as const));
  if (!choices.includes('garbage')) choices[rng.int(0, sectors - 1)] = 'garbage';
  for (let s = 0; s < sectors; s++) {
    const sStart = (firstSector + s) * S;
    const sEnd = sStart + S;
    const inStart = Math.max(sStart, start);
    const inEnd = Math.min(sEnd, end);
    if (choices[s] === 'old') {
      n.data.set(old.subarray(inStart - start, inEnd - start), inStart);
    } else if (choices[s] === 'garbage') {
      const gStart = policy.tearScope === 'sector' ? sStart : inStart;
      const gEnd = policy.tearScope === 'sector' ? Math.min(sEnd, n.size) : inEnd;
      n.data.set(rng.bytes(gEnd - gStart), gStart);
    }
  }
}
