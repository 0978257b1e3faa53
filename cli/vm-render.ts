/**
 * Human rendering of VM inventories and VM snapshot trees for `deltadisk vm …`.
 * Pure string building; the commands decide where the lines go.
 */
import type { VmInventory, VmSnapshotNode } from '../lib/index.js';
import { formatBytes } from './parse-size.js';

export function renderSnapshotTree(list: readonly VmSnapshotNode[]): string[] {
  const lines: string[] = [];
  const children = new Map<number | null, VmSnapshotNode[]>();
  const uids = new Set(list.map((s) => s.uid));
  for (const s of list) {
    const parent = s.parent !== null && uids.has(s.parent) ? s.parent : null;
    children.set(parent, [...(children.get(parent) ?? []), s]);
  }
  const walk = (parent: number | null, indent: string, seen: Set<number>): void => {
    for (const s of children.get(parent) ?? []) {
      if (seen.has(s.uid)) continue;
      seen.add(s.uid);
      const mem = s.memoryFile === null ? '' : '  [memory]';
      lines.push(`${indent}${s.current ? '* ' : '  '}${s.name || '(no name)'}  #${s.uid}  ${s.created ?? '(no time)'}${mem}${s.description ? `  ${s.description}` : ''}`);
      walk(s.uid, `${indent}    `, seen);
    }
  };
  walk(null, '', new Set());
  return lines;
}

export function renderInventory(inv: VmInventory): string[] {
  const out: string[] = [];
  out.push(`VM ${inv.displayName ?? inv.vmx}  (${inv.dir}/${inv.vmx})`);
  const state = [inv.suspended ? 'suspended' : undefined, inv.looksRunning ? 'looks running (lock files)' : undefined].filter(Boolean).join(', ');
  if (state) out.push(`state: ${state}`);
  out.push('');
  out.push('disks:');
  for (const d of inv.disks) {
    const size = d.capacity === null ? '?' : formatBytes(d.capacity);
    const flags = [d.mode !== 'persistent' ? d.mode : undefined, d.outside ? 'outside the VM directory' : undefined, d.included ? undefined : 'NOT INCLUDED'].filter(Boolean).join(', ');
    out.push(`  ${d.node}  ${d.fileName}  ${size}  ${d.format}${flags ? `  (${flags})` : ''}`);
    for (const [i, l] of d.links.entries()) {
      out.push(`    ${i === 0 ? 'leaf' : 'parent'} ${l.name}  ${l.createType}  CID ${l.cid ?? '?'} parent ${l.parentCid ?? '?'}${l.embedded ? '  (embedded descriptor)' : ''}`);
      for (const e of l.extents) out.push(`      ${e.access} ${e.type} ${e.file ?? ''}${e.path === null && e.file !== undefined ? '  (unavailable)' : ''}`);
    }
    if (d.chain !== null) {
      out.push(`    chain: depth ${d.chain.depth}, ${d.chain.layerCount} layers, ${formatBytes(d.chain.allocatedBytes)} allocated, ${d.chain.snapshots.length} snapshots`);
      for (const s of d.chain.snapshots) out.push(`      ${s.current ? '* ' : '  '}${s.name}  ${s.created}`);
    }
  }
  out.push('');
  out.push('snapshots:');
  const tree = renderSnapshotTree(inv.snapshots);
  out.push(...(tree.length === 0 ? ['  none'] : tree.map((l) => `  ${l}`)));
  out.push('');
  const total = inv.files.reduce((n, f) => n + f.size, 0);
  out.push(`files (${inv.files.length}, ${formatBytes(total)}):`);
  for (const f of inv.files) out.push(`  ${f.kind.padEnd(17)} ${formatBytes(f.size).padStart(10)}  ${f.name}`);
  if (inv.skipped.length > 0) {
    out.push('');
    out.push('skipped:');
    for (const s of inv.skipped) out.push(`  ${s.name}: ${s.reason}`);
  }
  out.push('');
  if (inv.problems.length === 0) out.push('problems: none');
  else {
    out.push(`problems (${inv.problems.length}):`);
    for (const p of inv.problems) out.push(`  ${p.severity.padEnd(7)} ${p.code}: ${p.message}`);
  }
  return out;
}
