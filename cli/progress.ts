/**
 * Byte progress on stderr, drawn by cli-progress, only when Output allows it
 * (a TTY, no --json, no --quiet). Otherwise every call is a no-op.
 */
import cliProgress from 'cli-progress';
import type { Output } from './output.js';
import { formatBytes } from './parse-size.js';

export interface Progress {
  add(bytes: number): void;
  stop(): void;
}

const none: Progress = { add() {}, stop() {} };

export function startProgress(out: Output, label: string, total: number): Progress {
  if (!out.showProgress || total <= 0) return none;
  // Forced on (--progress) without a terminal: cli-progress draws nothing unless told
  // to, so it writes a plain line now and then, and keeps the last one.
  const tty = process.stderr.isTTY === true;
  const bar = new cliProgress.SingleBar(
    {
      format: `${label} [{bar}] {percentage}% | {done} / {size} | {rate}/s | ETA {eta_formatted}`,
      stream: process.stderr,
      hideCursor: tty,
      clearOnComplete: tty,
      noTTYOutput: !tty,
      notTTYSchedule: 1000,
      etaBuffer: 50,
    },
    cliProgress.Presets.shades_classic,
  );
  const started = Date.now();
  let done = 0;
  bar.start(total, 0, { done: formatBytes(0), size: formatBytes(total), rate: formatBytes(0) });
  return {
    add(bytes: number) {
      done += bytes;
      const secs = Math.max(0.001, (Date.now() - started) / 1000);
      bar.update(done, { done: formatBytes(done), size: formatBytes(total), rate: formatBytes(Math.round(done / secs)) });
    },
    stop() {
      bar.stop();
    },
  };
}
