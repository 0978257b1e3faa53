/**
 * The accumulator an inspection fills: files of the set (one entry per real path,
 * the first classification wins), and problems. Shared by the chain walkers and
 * the inventory so every finding is recorded the same way.
 */
import type { FileSystem } from '../io/file-system.js';
import type { ProblemCode, ProblemSeverity, VmFile, VmFileKind, VmProblem } from './vm-inventory-types.js';
import { nameInVm, type Resolved, type VmPathScope } from './vm-reference.js';

export class VmFindings implements VmPathScope {
  readonly fs: FileSystem;
  readonly vmDir: string;
  readonly allowPaths: readonly string[];
  readonly files = new Map<string, VmFile>();
  readonly problems: VmProblem[] = [];

  constructor(fs: FileSystem, vmDir: string, allowPaths: readonly string[]) {
    this.fs = fs;
    this.vmDir = vmDir;
    this.allowPaths = allowPaths;
  }

  problem(code: ProblemCode, severity: ProblemSeverity, message: string, extra: { path?: string | undefined; disk?: string | undefined } = {}): void {
    const p: VmProblem = { code, severity, message, ...(extra.path === undefined ? {} : { path: extra.path }), ...(extra.disk === undefined ? {} : { disk: extra.disk }) };
    if (!this.problems.some((q) => q.code === p.code && q.message === p.message)) this.problems.push(p);
  }

  name(p: string): string {
    return nameInVm(this.vmDir, p);
  }

  /** Adds a file (stat for its size); an existing entry for the same path is kept. */
  async addFile(p: string, kind: VmFileKind, o: { disk?: string | undefined; immutable?: boolean; chainDisk?: boolean; size?: number } = {}): Promise<void> {
    if (this.files.has(p)) return;
    const size = o.size ?? (await this.fs.stat(p)).size;
    this.files.set(p, {
      name: this.name(p),
      path: p,
      kind,
      size,
      ...(o.disk === undefined ? {} : { disk: o.disk }),
      immutable: o.immutable ?? false,
      ...(o.chainDisk === true ? { chainDisk: true } : {}),
    });
  }

  /**
   * Records the problem a failed resolution means and returns the path when it
   * succeeded. `severity` is that of a missing or refused file.
   */
  resolvedOrReport(r: Resolved, what: string, severity: ProblemSeverity, disk?: string): string | undefined {
    switch (r.kind) {
      case 'ok':
        return r.path;
      case 'outside':
        this.problem('OUTSIDE_DIRECTORY', severity, `${what} ${r.path} is outside the VM directory and was not included; pass --allow-path with it (or its directory) to include it`, { path: r.path, disk });
        return undefined;
      case 'missing':
        this.problem('MISSING_FILE', severity, `${what} ${this.name(r.path)} does not exist`, { path: r.path, disk });
        return undefined;
      case 'unsafe':
        this.problem('UNSAFE_PATH', severity, `${what}: ${r.error.message}`, { path: r.path, disk });
        return undefined;
    }
  }
}
