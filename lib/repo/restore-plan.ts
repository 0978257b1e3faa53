/**
 * Deciding what a restore may write, before it writes anything.
 *
 * A manifest is data, possibly crafted. Every entry is checked here and the whole
 * restore refused (UNSAFE_PATH) if any selected entry could make it write outside the
 * target or through something it did not create:
 *  - names: relative, `/`-separated plain components (no `..`, `.`, empty, `\`, NUL or
 *    control characters), at most 4096 bytes and 256 levels;
 *  - collisions: two names the restore writes (entry paths, and the `<stem>.raw` of a
 *    disk restored flattened) that are equal after Unicode normalization (NFC), or
 *    after case folding when the target file system ignores case;
 *  - name lengths: no name the restore creates, temporary, lock and delta names
 *    included, may pass 255 bytes (LIMIT_EXCEEDED), so none fails halfway through;
 *  - parents: an entry's parent must be a directory entry that comes before it (never a
 *    symbolic link, never a file);
 *  - symbolic links: relative targets only, that stay inside the restore when resolved
 *    from where the link sits, through the other links of the backup, names matched
 *    exactly and as the collision check folds them; the work is bounded (each link is
 *    resolved once, within a step budget: LIMIT_EXCEEDED past it);
 *  - disks: a `.chain` entry owns the names of its delta files, which no other entry
 *    may use.
 * Special files (devices, FIFOs, sockets) are not refused here but skipped by restore
 * with a warning: they are never created.
 */
import { DeltaDiskError } from '../errors.js';
import { SPECIAL_TYPES, type Entry } from '../format/manifest.js';
import { MAX_PATH_BYTES, MAX_PATH_DEPTH } from '../format/repo-limits.js';
import { tempNameFor } from '../io/atomic-replace.js';
import { isPlainName } from '../io/path-guard.js';
import { lockPathFor } from '../io/writer-lock.js';

const MAX_LINK_HOPS = 40;

/** The longest file name (one path component, in bytes) file systems take (NAME_MAX). */
export const MAX_NAME_BYTES = 255;

export interface RestorePlanOptions {
  /** Restore only these paths (and what is below them). */
  readonly include?: readonly string[];
  /** The target ignores case: names that differ only in case collide. */
  readonly caseInsensitive?: boolean;
  /**
   * Disks are restored flattened, as `<stem>.raw` (flatName): that name then takes
   * part in the collision checks like any entry's.
   */
  readonly flatten?: boolean;
}

/** The raw image a flattened restore writes for the disk at `chainPath` (`<stem>.chain`). */
export function flatName(chainPath: string): string {
  return `${chainPath.slice(0, -'.chain'.length)}.raw`;
}

/** What the restore writes for `e`, relative to the target. */
export function outputPath(e: Entry, flatten: boolean): string {
  return e.type === 'chain' && flatten ? flatName(e.path) : e.path;
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

interface PlanLink {
  readonly path: string;
  readonly dir: string[];
  readonly target: string;
}

/**
 * The work (path components walked, plus the length of each name looked up) that
 * checking the links of one backup may take: twice what walking every link target
 * once from where its link sits costs, plus a fixed allowance for going through other
 * links. Each link is resolved once (memoized), so an honest backup stays far below;
 * a crafted one whose links expand through each other into ever longer paths is
 * refused (LIMIT_EXCEEDED) instead of being checked for minutes or hours.
 */
const LINK_WORK_ALLOWANCE = 16_000_000;

function linkWorkBudget(links: readonly PlanLink[]): number {
  let natural = 0;
  for (const l of links) {
    const length = l.dir.reduce((n, c) => n + c.length + 1, 0) + l.target.length + 1;
    natural += (l.target.split('/').length + 1) * length;
  }
  return LINK_WORK_ALLOWANCE + 2 * natural;
}

/**
 * Resolves the links of a backup the way the kernel would: a component that is a link
 * is replaced by where that link leads before the walk goes on. Names are looked up
 * through `fold` (the plan's collision key), so that on a case-insensitive target
 * `d/l` walks through the link `d/L`, as the file system will.
 *
 * Each link's resolution is computed once and remembered with the nesting depth it
 * needed; a link resolved `hops` links deep is refused when `hops` plus that depth
 * passes MAX_LINK_HOPS (the kernel's ELOOP), and a cycle never resolves.
 */
class LinkResolver {
  readonly #links: ReadonlyMap<string, PlanLink>;
  readonly #fold: (p: string) => string;
  readonly #done = new Map<string, { readonly at: string[] | undefined; readonly depth: number }>();
  readonly #active = new Set<string>();
  readonly #budget: number;
  #work = 0;
  /** The link `resolve` was asked about. */
  #top: PlanLink | undefined;

  constructor(links: readonly PlanLink[], fold: (p: string) => string) {
    const byKey = new Map<string, PlanLink>();
    for (const l of links) {
      const key = fold(l.path);
      const clash = byKey.get(key);
      if (clash !== undefined) unsafe(l.path, `it collides with ${JSON.stringify(clash.path)} after Unicode normalization or case folding`);
      byKey.set(key, l);
    }
    this.#links = byKey;
    this.#fold = fold;
    this.#budget = linkWorkBudget(links);
  }

  /** Where link `l` leads (parts), or undefined when that is outside the restore. */
  resolve(l: PlanLink): string[] | undefined {
    this.#top = l;
    const r = this.#link(this.#fold(l.path), 0);
    return r.depth > MAX_LINK_HOPS ? undefined : r.at;
  }

  #spend(n: number): void {
    this.#work += n;
    if (this.#work > this.#budget) {
      throw new DeltaDiskError('LIMIT_EXCEEDED', `refusing to restore: its symbolic links lead through each other into paths too long to check (more than ${this.#budget} steps)`);
    }
  }

  #link(key: string, level: number): { readonly at: string[] | undefined; readonly depth: number } {
    const known = this.#done.get(key);
    if (known !== undefined) return known;
    // Deeper than the kernel follows: the link asked about fails whatever lies below,
    // and refusing here bounds the recursion (and keeps cut-short walks out of the memo).
    if (level > MAX_LINK_HOPS) unsafe(this.#top!.path, `it is a symbolic link leading outside the restore (through more than ${MAX_LINK_HOPS} links)`);
    // A link met again while it is being resolved is a loop: it never resolves.
    if (this.#active.has(key)) return { at: undefined, depth: Infinity };
    const link = this.#links.get(key)!;
    this.#active.add(key);
    let r: { at: string[] | undefined; depth: number };
    try {
      r = this.#walk(link.dir, link.target, level);
    } finally {
      this.#active.delete(key);
    }
    this.#done.set(key, r);
    return r;
  }

  #walk(dir: readonly string[], target: string, level: number): { at: string[] | undefined; depth: number } {
    if (target.startsWith('/') || target.includes('\0')) return { at: undefined, depth: 0 };
    let at = [...dir];
    let depth = 0;
    for (const c of target.split('/')) {
      this.#spend(1);
      if (c === '' || c === '.') continue;
      if (c === '..') {
        if (at.length === 0) return { at: undefined, depth };
        at.pop();
        continue;
      }
      at.push(c);
      const name = at.join('/');
      this.#spend(name.length);
      const key = this.#fold(name);
      if (!this.#links.has(key)) continue;
      const to = this.#link(key, level + 1);
      depth = Math.max(depth, to.depth + 1);
      if (to.at === undefined || depth > MAX_LINK_HOPS) return { at: undefined, depth };
      this.#spend(to.at.length);
      at = [...to.at];
    }
    return { at, depth };
  }
}

/**
 * Checks every entry and selects those to restore (with the directories above them),
 * in manifest order.
 * @throws UNSAFE_PATH, LIMIT_EXCEEDED (a name too long, links too intricate to check),
 *   INVALID_ARGUMENT (an include that matches nothing)
 */
export function planRestore(entries: readonly Entry[], options: RestorePlanOptions = {}): Entry[] {
  const ci = options.caseInsensitive ?? false;
  const byPath = new Map<string, Entry>();
  const keys = new Map<string, { name: string; label: string }>();
  const links: PlanLink[] = [];
  const chainNames = new Map<string, string[]>(); // dir → chain descriptor names in it
  const namesIn = new Map<string, string[]>();
  // Every name the restore will create, whoever creates it: two that fold to one key collide.
  const claim = (e: Entry, name: string, label: string): void => {
    const key = collisionKey(name, ci);
    const clash = keys.get(key);
    if (clash !== undefined) {
      if (clash.name === name && clash.label === label) unsafe(e.path, 'it appears twice');
      const subject = label === JSON.stringify(e.path) ? 'it' : `its output ${label}`;
      unsafe(e.path, `${subject} collides with ${clash.label}${clash.name === name ? '' : ` after Unicode normalization${ci ? ' or case folding' : ''}`}`);
    }
    keys.set(key, { name, label });
  };
  for (const e of entries) {
    const parts = pathParts(e.path);
    claim(e, e.path, JSON.stringify(e.path));
    if (e.type === 'chain' && options.flatten === true && e.path.endsWith('.chain')) {
      claim(e, flatName(e.path), `${JSON.stringify(flatName(e.path))} (the disk ${JSON.stringify(e.path)} flattened)`);
    }
    const dir = parts.slice(0, -1).join('/');
    if (parts.length > 1) {
      const parent = byPath.get(dir);
      if (parent === undefined) unsafe(e.path, 'its directory is not in the backup before it');
      if (parent.type === 'symlink') unsafe(e.path, 'it lies inside a symbolic link');
      if (parent.type !== 'dir') unsafe(e.path, `its parent is a ${parent.type}, not a directory`);
    }
    if (e.type === 'symlink') links.push({ path: e.path, dir: parts.slice(0, -1), target: e.target });
    if (e.type === 'chain') {
      if (!e.path.endsWith('.chain') || parts[parts.length - 1] === '.chain') unsafe(e.path, 'a disk entry must be named <name>.chain');
      const chains = chainNames.get(dir) ?? [];
      chains.push(parts[parts.length - 1]!);
      chainNames.set(dir, chains);
    }
    const names = namesIn.get(dir) ?? [];
    names.push(parts[parts.length - 1]!);
    namesIn.set(dir, names);
    byPath.set(e.path, e);
  }
  for (const l of links) {
    if (l.target.startsWith('/')) unsafe(l.path, `it is a symbolic link to an absolute path (${JSON.stringify(l.target)})`);
  }
  // A link must stay inside however the target matches names: exactly, or folded as
  // the collision check folds them (Unicode normalization, and case when the target
  // ignores it); a file system may do any of these.
  const folds: ((p: string) => string)[] = ci
    ? [(p) => p, (p) => p.toUpperCase().toLowerCase(), (p) => collisionKey(p, true)]
    : [(p) => p, (p) => collisionKey(p, false)];
  for (const fold of folds) {
    const resolver = new LinkResolver(links, fold);
    for (const l of links) {
      if (resolver.resolve(l) === undefined) unsafe(l.path, `it is a symbolic link leading outside the restore (${JSON.stringify(l.target)})`);
    }
  }
  for (const [dir, chains] of chainNames) {
    for (const c of chains) {
      for (const other of namesIn.get(dir) ?? []) {
        if (chainOwns(c, other)) unsafe(dir === '' ? other : `${dir}/${other}`, `the disk ${JSON.stringify(c)} restores a file of that name`);
      }
    }
  }
  const flatten = options.flatten === true;
  if (options.include === undefined || options.include.length === 0) {
    checkNameLengths(entries, flatten);
    return [...entries];
  }
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
  const selected = entries.filter((e) => keep.has(e.path));
  checkNameLengths(selected, flatten);
  return selected;
}

/**
 * Every name restoring `e` creates in its directory, besides its own: the temporary
 * name a file or link is written under (atomic-replace.ts), and for a disk its delta
 * files and the lock and op-state files with their temporary names (writer-lock.ts,
 * descriptor-file.ts). A restore creates at most 2 × MAX_POINTS deltas, so six digits.
 */
function namesCreated(e: Entry, flatten: boolean): string[] {
  const name = outputPath(e, flatten).split('/').pop()!;
  switch (e.type) {
    case 'dir':
      return [name];
    case 'file':
    case 'symlink':
      return [name, tempNameFor(name)];
    case 'chain': {
      if (flatten) return [name, tempNameFor(name)];
      const stem = name.slice(0, -'.chain'.length);
      return [name, tempNameFor(name), tempNameFor(lockPathFor(name)), tempNameFor(`${name}.op`), `${stem}-000001.delta`];
    }
    default:
      return [];
  }
}

/**
 * Refuses (LIMIT_EXCEEDED) an entry that restoring would need a name longer than
 * MAX_NAME_BYTES for, temporary names included: found here, before anything is
 * written, rather than as ENAMETOOLONG halfway through the restore.
 */
function checkNameLengths(entries: readonly Entry[], flatten: boolean): void {
  for (const e of entries) {
    for (const c of e.path.split('/')) {
      if (Buffer.byteLength(c) > MAX_NAME_BYTES) {
        throw new DeltaDiskError('LIMIT_EXCEEDED', `refusing to restore ${JSON.stringify(e.path)}: a name is longer than ${MAX_NAME_BYTES} bytes`);
      }
    }
    const longest = Math.max(0, ...namesCreated(e, flatten).map((n) => Buffer.byteLength(n)));
    if (longest > MAX_NAME_BYTES) {
      throw new DeltaDiskError(
        'LIMIT_EXCEEDED',
        `refusing to restore ${JSON.stringify(e.path)}: restoring it needs a file name of ${longest} bytes (with its temporary${e.type === 'chain' && !flatten ? ', lock and delta' : ''} names), more than the ${MAX_NAME_BYTES} file systems allow`,
      );
    }
  }
}

export function isSpecial(e: Entry): boolean {
  return (SPECIAL_TYPES as readonly string[]).includes(e.type);
}
