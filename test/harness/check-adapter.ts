/**
 * The one place the harness calls the chain's consistency check, `Disk.check`.
 *
 * Every crash and fault state is run through it, on the files as found and again
 * after recovery: it must come out clean or leaks-only (qemu-img check's exit 0 / 3
 * taxonomy), and clean after a repair. If the result's shape is not one this
 * adapter knows, it throws, so the adapter gets updated rather than silently
 * passing.
 */
import { Disk } from '../../lib/chain/disk.js';
import type { FileSystem } from '../../lib/io/file-system.js';

export type CheckVerdict = 'clean' | 'leaks' | 'corrupt' | 'unavailable';

function count(v: unknown): number | undefined {
  if (typeof v === 'number') return v;
  if (typeof v === 'boolean') return v ? 1 : 0;
  if (Array.isArray(v)) return v.length;
  return undefined;
}

/** Maps a check result to a verdict; throws for a shape it does not know. */
export function interpretCheck(r: unknown): Exclude<CheckVerdict, 'unavailable'> {
  if (typeof r === 'object' && r !== null) {
    const o = r as Record<string, unknown>;
    const status = typeof o.status === 'string' ? o.status : typeof o.result === 'string' ? o.result : undefined;
    if (status !== undefined) {
      const s = status.toLowerCase();
      if (['clean', 'ok', 'consistent'].includes(s)) return 'clean';
      if (s.startsWith('leak')) return 'leaks';
      if (['corrupt', 'corrupted', 'damaged', 'errors'].includes(s)) return 'corrupt';
    }
    if (typeof o.exitCode === 'number') {
      if (o.exitCode === 0) return 'clean';
      if (o.exitCode === 3) return 'leaks';
      return 'corrupt';
    }
    const corrupt = count(o.corrupt) ?? count(o.errors) ?? count(o.corruptions) ?? count(o.damage);
    const leaks = count(o.leaks) ?? count(o.leaked) ?? count(o.leakedBytes);
    if (corrupt !== undefined || leaks !== undefined) {
      if ((corrupt ?? 0) > 0) return 'corrupt';
      return (leaks ?? 0) > 0 ? 'leaks' : 'clean';
    }
  }
  throw new Error(`check adapter: cannot interpret the result of Disk.check: ${JSON.stringify(r)?.slice(0, 400)}`);
}

/** Runs `Disk.check` on the disk at `path`. */
export async function runCheck(
  path: string,
  fs: FileSystem,
  options: { readonly repair?: boolean; readonly readData?: boolean },
): Promise<{ verdict: Exclude<CheckVerdict, 'unavailable'>; raw: unknown }> {
  const raw = await Disk.check(path, { fs, ...options });
  return { verdict: interpretCheck(raw), raw };
}
