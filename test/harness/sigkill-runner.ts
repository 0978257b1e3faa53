/**
 * The parent side of the SIGKILL runs: starts a child (sigkill-child.ts for the
 * chain, repo-sigkill-child.ts for the repository), reads its acknowledgements
 * line by line, and SIGKILLs it a given time after it is ready (or lets it kill
 * itself at a chosen call). What it acknowledged before dying is what must survive.
 */
import { spawn } from 'node:child_process';
import { Violation } from './workload.js';

export interface ChildResult {
  readonly acked: number;
  readonly done: boolean;
  /** File-system calls made when each step was acknowledged. */
  readonly callsAtAck: readonly number[];
  readonly signal: NodeJS.Signals | null;
}

/** Runs `node script ...args`; kills it `killAfterMs` after it is ready (undefined: let it run). */
export function runChild(script: string, args: readonly string[], killAfterMs: number | undefined, hardStopMs = 30_000): Promise<ChildResult> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [script, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let buffered = '';
    let stderr = '';
    let acked = 0;
    let done = false;
    const callsAtAck: number[] = [];
    let error: string | undefined;
    const hardStop = setTimeout(() => p.kill('SIGKILL'), hardStopMs);
    p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    p.stdout.on('data', (d: Buffer) => {
      buffered += d.toString();
      let nl: number;
      while ((nl = buffered.indexOf('\n')) >= 0) {
        const line = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 1);
        const msg = JSON.parse(line) as { ready?: boolean; ack?: number; done?: boolean; calls?: number; error?: string };
        if (msg.ack !== undefined && msg.calls !== undefined) callsAtAck.push(msg.calls);
        if (msg.ready && killAfterMs !== undefined) setTimeout(() => p.kill('SIGKILL'), killAfterMs);
        if (msg.ack !== undefined) {
          if (msg.ack !== acked) error = `acknowledgement ${msg.ack} out of order`;
          acked++;
        }
        if (msg.done) done = true;
        if (msg.error !== undefined) error = msg.error;
      }
    });
    p.on('error', reject);
    p.on('close', (_code, signal) => {
      clearTimeout(hardStop);
      if (error !== undefined) reject(new Violation(`the child failed on its own: ${error}\n${stderr}`));
      else resolve({ acked, done, callsAtAck, signal });
    });
  });
}
