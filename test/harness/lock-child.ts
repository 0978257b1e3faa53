/**
 * A long-lived child for the locking tests: it reads JSON commands, one per line,
 * on stdin and answers each with one JSON line on stdout.
 *
 *     {"cmd":"open","path":…,"readOnly":false,"at":<epoch ms>}  → {"ok":true,"ms":…} | {"code":…,"holder":…,"message":…,"ms":…}
 *     {"cmd":"close"}                                           → {"ok":true}
 *
 * `at` makes the open start at that wall-clock instant (two children given the same
 * instant race for the lock); `ms` is how long the open took.
 */
import readline from 'node:readline';
import { Disk } from '../../lib/chain/disk.js';
import { DeltaDiskError } from '../../lib/errors.js';

let disk: Disk | undefined;

function say(o: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify(o)}\n`);
}

async function waitUntil(at: number): Promise<void> {
  const early = at - Date.now() - 2;
  if (early > 0) await new Promise((r) => setTimeout(r, early));
  while (Date.now() < at) {
    // spin the last milliseconds so both racers start together
  }
}

async function handle(line: string): Promise<void> {
  const msg = JSON.parse(line) as { cmd: string; path?: string; readOnly?: boolean; at?: number };
  if (msg.cmd === 'open') {
    if (msg.at !== undefined) await waitUntil(msg.at);
    const t = performance.now();
    try {
      disk = await Disk.open(msg.path!, { readOnly: msg.readOnly ?? false });
      say({ ok: true, ms: performance.now() - t, pid: process.pid });
    } catch (err) {
      const e = err as DeltaDiskError;
      say({ code: err instanceof DeltaDiskError ? e.code : 'UNTYPED', holder: e.holder, message: e.message, ms: performance.now() - t });
    }
  } else if (msg.cmd === 'close') {
    await disk?.close();
    disk = undefined;
    say({ ok: true });
  }
}

let queue = Promise.resolve();
readline.createInterface({ input: process.stdin }).on('line', (line) => {
  queue = queue.then(() => handle(line)).catch((err: unknown) => say({ code: 'CRASH', message: String(err) }));
});
say({ ready: true, pid: process.pid });
