/**
 * Running consolidation (and planning it, for dry runs): drops, merges, and
 * compaction of layers full of garbage, one committed step at a time.
 *
 * Decisions come from `nextConsolidationStep`, so a dry run and a real run agree.
 * Every step is crash-safe on its own (a descriptor replacement, a resumable merge
 * or a compaction), so an interruption leaves a disk that reads correctly and that
 * the next run continues from.
 */
import { MAX_LAYERS, LOG_START } from '../format/limits.js';
import type { ChainContext } from './chain-context.js';
import { compactLayer, type CompactResult } from './compact.js';
import { applyStepToShape, nextConsolidationStep, type ConsolidationStep } from './consolidate-plan.js';
import type { ConsolidateResult } from './disk-types.js';
import { planMerge, runMerge, type MergeResult } from './merge.js';
import { layerSpace, referencedHashes } from './space-accounting.js';
import { Tree } from './tree.js';

/** What consolidation needs from the open disk besides its context. */
export interface MaintenanceOps {
  readonly ctx: ChainContext;
  /** Forgets layer `id` and unlinks its file (after a commit that dropped it). */
  removeLayerFile(id: string, file: string): Promise<void>;
}

/** Layers whose garbage (data no block and no reference reads) reaches `threshold` of their log. */
export async function compactableLayers(ctx: ChainContext, threshold: number): Promise<string[]> {
  if (threshold >= 1) return [];
  const d = ctx.descriptor();
  const all = await ctx.layers.getAll(d, d.layers.map((l) => l.id));
  const referenced = referencedHashes(all);
  return all
    .filter((layer) => {
      const garbage = layerSpace(layer, referenced).garbageBytes;
      return garbage >= d.blockSize && garbage >= threshold * (layer.logEnd - LOG_START);
    })
    .map((layer) => layer.id);
}

/** What consolidation would do, without doing it. */
export async function planConsolidation(ops: MaintenanceOps, maxDepth: number | undefined, threshold: number): Promise<ConsolidateResult> {
  const start = ops.ctx.descriptor();
  const depthBefore = new Tree(start).maxDepth();
  let d = start;
  const steps: ConsolidationStep[] = [];
  let blocked: string | undefined;
  for (let guard = 0; guard <= MAX_LAYERS; guard++) {
    const next = nextConsolidationStep(d, maxDepth);
    blocked = next.blocked;
    if (next.step === undefined) break;
    steps.push(next.step);
    d = applyStepToShape(d, next.step);
  }
  const remaining = new Set(d.layers.map((l) => l.id));
  const compactable = (await compactableLayers(ops.ctx, threshold)).filter((id) => remaining.has(id));
  return {
    dryRun: true,
    depthBefore,
    depthAfter: new Tree(d).maxDepth(),
    steps,
    merges: [],
    droppedLayers: steps.reduce((n, st) => n + (st.action === 'drop' ? st.layers.length : 0), 0),
    compacted: compactable.map((id) => ({ layer: id, bytesBefore: 0, bytesAfter: 0, dedupedBlocks: 0, zeroedBlocks: 0 })),
    blocked,
  };
}

/** Consolidates; the caller holds the disk's mutex and rebuilds its view after. */
export async function consolidate(ops: MaintenanceOps, maxDepth: number | undefined, threshold: number): Promise<ConsolidateResult> {
  const ctx = ops.ctx;
  const depthBefore = new Tree(ctx.descriptor()).maxDepth();
  const merges: MergeResult[] = [];
  const steps: ConsolidationStep[] = [];
  const compacted: CompactResult[] = [];
  let dropped = 0;
  let blocked: string | undefined;
  for (let guard = 0; guard <= MAX_LAYERS; guard++) {
    const next = nextConsolidationStep(ctx.descriptor(), maxDepth);
    blocked = next.blocked;
    const step = next.step;
    if (step === undefined) break;
    steps.push(step);
    if (step.action === 'drop') {
      const d = ctx.descriptor();
      const ids = new Set(step.layers);
      const files = d.layers.filter((l) => ids.has(l.id));
      await ctx.commitDescriptor({ ...d, generation: d.generation + 1, layers: d.layers.filter((l) => !ids.has(l.id)) });
      for (const l of files) await ops.removeLayerFile(l.id, l.file);
      dropped += files.length;
    } else {
      merges.push(await runMerge(ctx, await planMerge(ctx, step.layer)));
    }
  }
  for (const id of await compactableLayers(ctx, threshold)) compacted.push(await compactLayer(ctx, id, { dedup: false }));
  return {
    dryRun: false,
    depthBefore,
    depthAfter: new Tree(ctx.descriptor()).maxDepth(),
    steps,
    merges,
    droppedLayers: dropped,
    compacted,
    blocked,
  };
}
