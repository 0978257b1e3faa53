// Property-test your own snapshot logic against a real disk and the reference model.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import { it } from 'vitest';
import { Disk } from 'deltadisk';
import { DiskModel, assertSameBytes, diskCommands, type DiskCommand } from 'deltadisk/testing';

// The logic under test: take a safety snapshot, apply an update, revert if it throws.
async function guardedUpdate(disk: Disk, name: string, update: () => Promise<void>): Promise<void> {
  await disk.snapshot(name);
  try {
    await update();
  } catch {
    await disk.revert(name);
  }
  await disk.deleteSnapshot(name);
}

// A command of our own: a guarded update that writes, then fails half the time.
class GuardedUpdateCommand implements DiskCommand {
  constructor(readonly offset: number, readonly byte: number, readonly fails: boolean) {}
  check = (m: Readonly<DiskModel>) => !m.hasSnapshot('guard');
  async run(m: DiskModel, r: { disk: Disk }) {
    const data = new Uint8Array(1000).fill(this.byte);
    await guardedUpdate(r.disk, 'guard', async () => {
      await r.disk.write(this.offset, data);
      if (this.fails) throw new Error('update failed');
    });
    if (!this.fails) m.write(this.offset, data); // a failed update must leave no trace
    assertSameBytes(await r.disk.read(0, m.virtualSize), m.read(0, m.virtualSize), 'after guarded update');
  }
  toString = () => `guardedUpdate(${this.offset}, ${this.byte}, ${this.fails ? 'fails' : 'succeeds'})`;
}

it('guarded updates leave no trace when they fail', async () => {
  const size = 64 * 1024;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'guarded-'));
  const commands = [
    ...diskCommands({ virtualSize: size, blockSize: 4096 }),
    fc.tuple(fc.nat(size - 1000), fc.integer({ min: 1, max: 255 }), fc.boolean()).map(([o, b, f]) => new GuardedUpdateCommand(o, b, f)),
  ];
  let run = 0;
  try {
    await fc.assert(
      fc.asyncProperty(fc.commands(commands, { maxCommands: 30 }), async (cmds) => {
        const file = path.join(dir, `disk${run++}.chain`);
        const real = { disk: await Disk.create(file, { size, blockSize: 4096 }), path: file, options: {} };
        try {
          await fc.asyncModelRun(() => ({ model: new DiskModel(size, 4096), real }), cmds);
        } finally {
          await real.disk.close();
        }
      }),
      { numRuns: 25 },
    );
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
