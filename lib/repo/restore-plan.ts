/**
 * Deciding what a restore may write, before it writes anything.
 *
 * A manifest is data, possibly crafted. Every entry is checked here and the whole
 * restore refused (UNSAFE_PATH) if any selected entry could make it write outside the
 * target or through something it did not create:
 *  - names: relative, `/`-separated plain components (no `..`, `.`, empty, `\`, NUL or
 *    control characters), at most 4096 bytes and 256 levels;
 *  - collisions: two entries whose paths are equal after Unicode normalization (NFC),
 *    or after case folding when the target file system ignores case;
 *  - parents: an entry's parent must be a directory entry that comes before it (never a
 *    symbolic link, never a file);
 *  - symbolic links: relative targets only, that stay inside the restore when resolved
 *    from where the link sits, through the other links of the backup;
 *  - disks: a `.chain` entry owns the names of its delta files, which no other entry
 *    may use.
 * Special files (devices, FIFOs, sockets) are not refused here but skipped by restore
 * with a warning: they are never created.
 */
import { DeltaDiskError } from '../errors.js';
import { SPECIAL_TYPES, type Entry } from '../format/manifest.js';
import { MAX_PATH_BYTES, MAX_PATH_DEPTH } from '../format/repo-limits.js';
import { isPlainName } from '../io/path-guard.js';

const MAX_LINK_HOPS = 40;

export interface RestorePlanOptions {
  /** Restore only these paths (and what is below them). */
  readonly include?: readonly string[];
  /** The target ignores case: names that differ only in case collide. */
  readonly caseInsensitive?: boolean;
}

function unsafe(entry: string, why: string): never {
  throw new DeltaDiskError('UNSAFE_PATH', `refusing to restore ${JSON.stringify(entry)}: ${why}`);
}

/** Splits and checks an entry path; throws UNSAFE_PATH with the reason. */
export function pathParts(p: string): string[] {
  if (typeof p !== 'string' || p.length === 0) unsafe(String(p), 'empty name');
  if (p.startsWith('/')) unsafe(p, 'absolute name');
  if (Buffer.byteLength(p) > MAX_PATH_BYTES) unsafe(p, `name longer than ${MAX_PATH_BYTES} bytes`);
  const parts = p.split('/');
  if (parts.length > MAX_PATH_DEPTH) unsafe(p, `deeper than ${MAX_PATH_DEPTH} levels`);
  for (const c of parts) {
    if (c === '..') unsafe(p, 'it climbs out of the target (..)');
    if (!isPlainName(c)) unsafe(p, 'it holds an empty, "." or non-plain component (separator, backslash, NUL or control character)');
  }
  return parts;
}

export function collisionKey(p: string, caseInsensitive: boolean): string {
  const n = p.normalize('NFC');
  return caseInsensitive ? n.toUpperCase().toLowerCase().normalize('NFC') : n;
}

/** The names a chain at `name` (`<stem>.chain`) writes beside itself. */
export function chainOwns(name: string, other: string): boolean {
  const stem = name.slice(0, -'.chain'.length);
  return other === `${name}.lock` || other === `${name}.op` || (other.startsWith(`${stem}-`) && /^-\d{6,12}\.delta$/.test(other.slice(stem.length)));
}

/**
 * Resolves a link target as seen from `dir` (parts) through the links of the backup,
 * the way the kernel would: a component that is a link is replaced by where that
 * link leads before the walk goes on.
 * @returns the parts it resolves to, or undefined when it leaves the restore root.
 */
function resolveInside(dir: readonly string[], target: string, links: ReadonlyMap<string, { dir: string[]; target: string }>, hops = 0): string[] | undefined {
  if (hops > MAX_LINK_HOPS || target.startsWith('/') || target.includes('\0')) return undefined;
  let at = [...dir];
  for (const c of target.split('/')) {
    if (c === '' || c === '.') continue;
    if (c === '..') {
      if (at.length === 0) return undefined;
      at.pop();
      continue;
    }
    at.push(c);
    const link = links.get(at.join('/'));
    if (link !== undefined) {
      const to = resolveInside(link.dir, link.target, links, hops + 1);
      if (to === undefined) return undefined;
      at = to;
    }
  }
  return at;
}

/**
 * Checks every entry and selects those to restore (with the directories above them),
 * in manifest order.
 * @throws UNSAFE_PATH, INVALID_ARGUMENT (an include that matches nothing)
 */
export function planRestore(entries: readonly Entry[], options: RestorePlanOptions = {}): Entry[] {
  const ci = options.caseInsensitive ?? false;
  const byPath = new Map<string, Entry>();
  const keys = new Map<string, string>();
  const links = new Map<string, { dir: string[]; target: string }>();
  const chainNames = new Map<string, string[]>(); // dir → chain descriptor names in it
  const namesIn = new Map<string, string[]>();
  for (const e of entries) {
    const parts = pathParts(e.path);
    const key = collisionKey(e.path, ci);
    const clash = keys.get(key);
    if (clash !== undefined) {
      unsafe(e.path, clash === e.path ? 'it appears twice' : `it collides with ${JSON.stringify(clash)} after Unicode normalization${ci ? ' or case folding' : ''}`);
    }
    keys.set(key, e.path);
    const dir = parts.slice(0, -1).join('/');
    if (parts.length > 1) {
      const parent = byPath.get(dir);
      if (parent === undefined) unsafe(e.path, 'its directory is not in the backup before it');
      if (parent.type === 'symlink') unsafe(e.path, 'it lies inside a symbolic link');
      if (parent.type !== 'dir') unsafe(e.path, `its parent is a ${parent.type}, not a directory`);
    }
    if (e.type === 'symlink') links.set(e.path, { dir: parts.slice(0, -1), target: e.target });
    if (e.type === 'chain') {
      if (!e.path.endsWith('.chain') || parts[parts.length - 1] === '.chain') unsafe(e.path, 'a disk entry must be named <name>.chain');
      chainNames.set(dir, [...(chainNames.get(dir) ?? []), parts[parts.length - 1]!]);
    }
    namesIn.set(dir, [...(namesIn.get(dir) ?? []), parts[parts.length - 1]!]);
    byPath.set(e.path, e);
  }
  for (const [p, l] of links) {
    if (l.target.startsWith('/')) unsafe(p, `it is a symbolic link to an absolute path (${JSON.stringify(l.target)})`);
    if (resolveInside(l.dir, l.target, links) === undefined) unsafe(p, `it is a symbolic link leading outside the restore (${JSON.stringify(l.target)})`);
  }
  for (const [dir, chains] of chainNames) {
    for (const c of chains) {
      for (const other of namesIn.get(dir) ?? []) {
        if (chainOwns(c, other)) unsafe(dir === '' ? other : `${dir}/${other}`, `the disk ${JSON.stringify(c)} restores a file of that name`);
      }
    }
  }
  if (options.include === undefined || options.include.length === 0) return [...entries];
  const wanted = options.include.map((p) => p.replace(/^\/+|\/+$/g, ''));
  const keep = new Set<string>();
  for (const w of wanted) {
    let hit = false;
    for (const e of entries) {
      if (e.path === w || e.path.startsWith(`${w}/`) || w === '') {
        hit = true;
        keep.add(e.path);
        const parts = e.path.split('/');
        for (let k = 1; k < parts.length; k++) keep.add(parts.slice(0, k).join('/'));
      }
    }
    if (!hit) throw new DeltaDiskError('INVALID_ARGUMENT', `nothing in the backup matches --include ${JSON.stringify(w)}`);
  }
  return entries.filter((e) => keep.has(e.path));
}

export function isSpecial(e: Entry): boolean {
  return (SPECIAL_TYPES as readonly string[]).includes(e.type);
}
