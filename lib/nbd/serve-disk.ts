/**
 * Serving an open disk: the NBD server plus, when the disk is writable, its
 * control channel. What `deltadisk serve` runs, and the one call a program needs.
 *
 *     const disk = await Disk.open('vm/disk.chain');
 *     const served = await serveDisk(disk, { listen: { host: '127.0.0.1', port: 10809 } });
 *     console.log(served.server.uri());          // nbd://127.0.0.1:10809/
 *     // … later:
 *     await served.close();                      // stops serving, flushes
 *     await disk.close();
 *
 * The caller keeps owning the disk. `close()` first removes the control socket
 * (no new snapshot can start), then drains the NBD connections and flushes.
 */
import type { Disk } from '../chain/disk.js';
import { ControlServer } from './control-server.js';
import { DiskExports, type DiskExportsOptions } from './disk-exports.js';
import { NbdServer, type ListenAddress, type NbdServerOptions } from './server.js';

export interface ServeDiskOptions extends DiskExportsOptions, NbdServerOptions {
  readonly listen: ListenAddress;
  /**
   * The control socket: its path, true for `<disk>.ctl` (the default when the
   * disk is open for writing), false for none. A read-only disk has none.
   */
  readonly control?: boolean | string;
}

export interface ServedDisk {
  readonly disk: Disk;
  readonly exports: DiskExports;
  readonly server: NbdServer;
  readonly control: ControlServer | undefined;
  /** Stops serving (idempotent); the disk stays open. */
  close(): Promise<void>;
}

export async function serveDisk(disk: Disk, options: ServeDiskOptions): Promise<ServedDisk> {
  const exports = new DiskExports(disk, options);
  const server = await NbdServer.listen(exports, options.listen, options);
  let control: ControlServer | undefined;
  const wanted = options.control ?? true;
  if (wanted !== false && !disk.readOnly) {
    try {
      control = await ControlServer.start(server, {
        ...(typeof wanted === 'string' ? { path: wanted } : {}),
        ...(options.log === undefined ? {} : { log: options.log }),
      });
    } catch (err) {
      await server.close(0);
      throw err;
    }
  }
  let closing: Promise<void> | undefined;
  return {
    disk,
    exports,
    server,
    control,
    close() {
      closing ??= (async () => {
        await control?.close();
        await server.close();
      })();
      return closing;
    },
  };
}
