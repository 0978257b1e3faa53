/**
 * Which change consolidation makes next, decided from the tree alone, so that a
 * dry run and the real run make the same decisions.
 *
 * In order of preference:
 *  1. drop sealed leaves that carry no snapshot (nothing reads them);
 *  2. merge away layers that carry no snapshot and have a single child;
 *  3. with a depth cap, on the deepest path that exceeds it, merge away the oldest
 *     layer that carries no snapshot (streaming it into all its children when it is
 *     shared by branches). When every layer on that path carries a snapshot the cap
 *     cannot be met without deleting snapshots, and planning stops there.
 */
import type { Descriptor } from '../format/descriptor.js';
import { Tree } from './tree.js';

export type ConsolidationStep =
  | { readonly action: 'drop'; readonly layers: readonly string[] }
  | { readonly action: 'merge'; readonly layer: string; readonly reason: 'single-child' | 'max-depth' };

export interface NextStep {
  readonly step: ConsolidationStep | undefined;
  /** Set when a depth cap cannot be met: why. */
  readonly blocked: string | undefined;
}

export function nextConsolidationStep(d: Descriptor, maxDepth: number | undefined): NextStep {
  const tree = new Tree(d);
  const droppable = tree.droppable();
  if (droppable.length > 0) return { step: { action: 'drop', layers: droppable.map((l) => l.id) }, blocked: undefined };
  const mergeable = tree.mergeable();
  if (mergeable.length > 0) return { step: { action: 'merge', layer: mergeable[0]!.id, reason: 'single-child' }, blocked: undefined };
  if (maxDepth === undefined) return { step: undefined, blocked: undefined };
  let deepest: { id: string; depth: number } | undefined;
  for (const l of d.layers) {
    if (tree.children(l.id).length > 0) continue;
    const depth = tree.path(l.id).length;
    if (depth > maxDepth && (deepest === undefined || depth > deepest.depth)) deepest = { id: l.id, depth };
  }
  if (deepest === undefined) return { step: undefined, blocked: undefined };
  const candidate = tree.path(deepest.id).find((l) => l.id !== d.active && tree.snapshotOn(l.id) === undefined && tree.children(l.id).length > 0);
  if (candidate === undefined) {
    return {
      step: undefined,
      blocked: `a path is ${deepest.depth} layers deep and every layer on it carries a snapshot; delete snapshots to go below that`,
    };
  }
  return { step: { action: 'merge', layer: candidate.id, reason: 'max-depth' }, blocked: undefined };
}

/** The descriptor after a step, as far as the tree's shape is concerned (for dry runs). */
export function applyStepToShape(d: Descriptor, step: ConsolidationStep): Descriptor {
  if (step.action === 'drop') {
    const ids = new Set(step.layers);
    return { ...d, layers: d.layers.filter((l) => !ids.has(l.id)) };
  }
  const removed = d.layers.find((l) => l.id === step.layer)!;
  return {
    ...d,
    layers: d.layers.filter((l) => l.id !== removed.id).map((l) => (l.parent === removed.id ? { ...l, parent: removed.parent } : l)),
  };
}
