/**
 * Commands that change a disk while `deltadisk serve` holds it.
 *
 * The serving process holds the writer lock, so opening the disk for writing
 * fails with LOCKED. Then, if the disk's control socket answers, the command is
 * sent to the server instead (which applies it between NBD requests); if nothing
 * answers, the LOCKED error stands. A control channel that answers wrongly (say,
 * a newer protocol version) reports its own error, which says more.
 */
import { findControl, isDeltaDiskError, type ControlClient, type Disk } from '../lib/index.js';
import { withDisk, type Context } from './context.js';

export async function onDiskOrServer<T>(
  ctx: Context,
  diskPath: string,
  direct: (disk: Disk) => Promise<T>,
  served: (control: ControlClient) => Promise<T>,
): Promise<T> {
  let disk: Disk;
  try {
    disk = await ctx.openDisk(diskPath, false);
  } catch (err) {
    if (!isDeltaDiskError(err, 'LOCKED')) throw err;
    const control = await findControl(diskPath);
    if (control === undefined) throw err;
    ctx.out.info(`${diskPath} is served by pid ${control.hello.pid}; asking it through ${control.path}`);
    try {
      return await served(control);
    } finally {
      await control.close();
    }
  }
  return withDisk(disk, direct);
}

/** The live snapshot list from a serving process, or undefined when the disk is not served. */
export async function listFromServer(diskPath: string): Promise<Awaited<ReturnType<ControlClient['list']>> | undefined> {
  const control = await findControl(diskPath);
  if (control === undefined) return undefined;
  try {
    return await control.list();
  } finally {
    await control.close();
  }
}
