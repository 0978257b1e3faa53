/**
 * Benchmark of the backup repository, with restic on the same data in the same run
 * (when `restic` is on the PATH). Run: `npm run build && node dist/bench/repository.js`.
 *
 * Every figure is taken from the CLI as a user runs it (a process each, start-up
 * included, as restic's) and printed only after its result is verified: restores are
 * compared with the source by SHA-256. Baselines measured in the same run: writing
 * the same bytes to a file with fsync (the device), through the page cache and past
 * it (O_DIRECT); reading the image and writing as many bytes at the same time, both
 * past the page cache (the least a first backup or a restore moves: the one reads
 * the image and writes packs, the other reads packs and writes the image, on the
 * same device here); and hashing them (SHA-256). restic's restore does not fsync what it
 * writes, so its restore is timed to its exit and to durable (a sync after it).
 *
 * Environment:
 *   DELTADISK_BENCH_DIR         work directory (default: a new one under the OS temp dir)
 *   DELTADISK_BENCH_MIB         image size in MiB (default 1024)
 *   DELTADISK_BENCH_SPARSE_GIB  size of the sparse image for the memory figure (default 16; 0 skips)
 *   DELTADISK_BENCH_RESTIC      set to 0 to skip restic
 *   DELTADISK_BENCH_CHAIN_MIB   sizes of further chain disks for the incremental figure, e.g. 4096 (default none)
 *   DELTADISK_BENCH_QUIET_SECONDS  pause after the sync before each timed step (default 4)
 */
import { spawn, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Disk } from '../lib/index.js';
import { NODE_FLAGS } from '../cli/node-flags.js';
import { alignedBuffer } from '../lib/io/aligned-buffer.js';
import { dropCaches, quiet } from './bench-util.js';

const MiB = 2 ** 20;
const SIZE = Number(process.env.DELTADISK_BENCH_MIB ?? 1024) * MiB;
const SPARSE = Number(process.env.DELTADISK_BENCH_SPARSE_GIB ?? 16) * 1024 * MiB;
/** Sizes of further chain disks (MiB) for the incremental figure: it falls with the disk's size. */
const CHAIN_MIB = (process.env.DELTADISK_BENCH_CHAIN_MIB ?? '').split(',').filter((x) => x !== '').map(Number);
const ROOT = process.env.DELTADISK_BENCH_DIR ?? fs.mkdtempSync(path.join(os.tmpdir(), 'deltadisk-bench-'));
const CLI = path.resolve(import.meta.dirname, '../deltadisk.cjs');
// The CLI's index cache lives with the benchmark's files, not in ~/.cache.
process.env.DELTADISK_CACHE_DIR ??= path.join(ROOT, 'cache');
const RESTIC = process.env.DELTADISK_BENCH_RESTIC !== '0' && spawnSync('restic', ['version']).status === 0;
const RESTIC_ENV = { ...process.env, RESTIC_PASSWORD: 'deltadisk-bench', RESTIC_PROGRESS_FPS: '0.1' };

interface Run {
  readonly seconds: number;
  readonly stdout: string;
  readonly maxRssKiB: number;
}

function fail(message: string): never {
  process.stderr.write(`benchmark failed: ${message}\n`);
  process.exit(1);
}

/** Runs a command; its peak RSS (KiB) is read through a small preload for our CLI. */
function run(cmd: string, args: readonly string[], env: NodeJS.ProcessEnv = process.env): Promise<Run> {
  return new Promise((resolve) => {
    const t0 = performance.now();
    const child = spawn(cmd, args as string[], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('close', (code) => {
      const seconds = (performance.now() - t0) / 1000;
      if (code !== 0) fail(`${path.basename(cmd)} ${args.join(' ')} exited ${code}:\n${stderr}`);
      const rss = /MAXRSS (\d+)/.exec(stderr);
      resolve({ seconds, stdout, maxRssKiB: rss ? Number(rss[1]) : 0 });
    });
  });
}


function deltadisk(...args: string[]): Promise<Run> {
  // VmHWM, not getrusage's maxrss: Linux carries maxrss over exec from the forking
  // parent, which would charge this benchmark's own memory to the child.
  const code = `import fs from 'node:fs';
    const peakRssKiB = () => Number(/VmHWM:\\s+(\\d+)/.exec(fs.readFileSync('/proc/self/status', 'utf8'))?.[1] ?? process.resourceUsage().maxRSS);
    process.argv = [process.argv[0], ${JSON.stringify(CLI)}, ...${JSON.stringify(args)}];
    process.on('exit', () => process.stderr.write('MAXRSS ' + peakRssKiB() + '\\n'));
    await import(${JSON.stringify(CLI)});`;
  // With the executable's V8 options, as its first lines run it.
  return run(process.execPath, [...NODE_FLAGS, '--input-type=module', '-e', code]);
}

function restic(...args: string[]): Promise<Run> {
  return run('restic', args, RESTIC_ENV);
}

function duBytes(p: string): number {
  const st = fs.lstatSync(p);
  if (!st.isDirectory()) return st.size;
  return fs.readdirSync(p).reduce((a, n) => a + duBytes(path.join(p, n)), 0);
}

async function sha256File(p: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of fs.createReadStream(p, { highWaterMark: 8 * MiB })) h.update(chunk as Buffer);
  return h.digest('hex');
}

function writeImage(p: string, fill: (offset: number, piece: Buffer) => void): void {
  const fd = fs.openSync(p, 'w');
  const piece = Buffer.allocUnsafe(8 * MiB);
  for (let off = 0; off < SIZE; off += piece.length) {
    fill(off, piece);
    fs.writeSync(fd, piece, 0, Math.min(piece.length, SIZE - off), off);
  }
  fs.fsyncSync(fd);
  fs.closeSync(fd);
}

/**
 * Seconds to read `src` and write as many bytes to a new file at the same time, both
 * O_DIRECT in 4 MiB requests, one at a time each (as `dd` does), then fsync.
 */
async function readWriteSeconds(src: string, bytes: Buffer): Promise<number> {
  const dst = path.join(ROOT, 'baseline-rw');
  const t = performance.now();
  const rfd = await fs.promises.open(src, fs.constants.O_RDONLY | fs.constants.O_DIRECT);
  const wfd = await fs.promises.open(dst, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_DIRECT);
  try {
    const inBuf = alignedBuffer(4 * MiB);
    const outBuf = alignedBuffer(4 * MiB);
    let read = 0;
    const reading = (async () => {
      for (let off = 0; off < bytes.length; off += inBuf.length) {
        const { bytesRead } = await rfd.read(inBuf, 0, inBuf.length, off);
        read += bytesRead;
      }
    })();
    const writing = (async () => {
      for (let off = 0; off < bytes.length; off += outBuf.length) {
        const n = bytes.copy(outBuf, 0, off, off + outBuf.length);
        await wfd.write(outBuf, 0, n, off);
      }
      await wfd.sync();
    })();
    await Promise.all([reading, writing]);
    if (read !== bytes.length) fail(`the read+write baseline read ${read} of ${bytes.length} bytes`);
  } finally {
    await rfd.close();
    await wfd.close();
  }
  const seconds = (performance.now() - t) / 1000;
  fs.unlinkSync(dst);
  return seconds;
}

const rate = (bytes: number, s: number): string => `${(bytes / MiB / s).toFixed(0)} MiB/s`;
const gib = (b: number): string => `${(b / 2 ** 30).toFixed(3)} GiB`;
const results: Record<string, number> = {};
const lines: string[] = [];
function report(key: string, text: string, values: Record<string, number>): void {
  for (const [k, v] of Object.entries(values)) results[`${key}.${k}`] = Number(v.toFixed(4));
  lines.push(text);
  process.stdout.write(`${text}\n`);
}

async function verifyRestore(repo: string, id: string, rel: string, want: string, extra: string[] = []): Promise<Run> {
  const target = path.join(ROOT, `restore-${id.slice(0, 8)}-${Date.now()}`);
  const r = await deltadisk('restore', id, '--repo', repo, '--target', target, ...extra);
  if ((await sha256File(path.join(target, rel))) !== want) fail(`restored ${rel} differs from the source`);
  fs.rmSync(target, { recursive: true, force: true });
  return r;
}

function summaryOf(r: Run): Record<string, unknown> {
  const line = r.stdout.split('\n').find((l) => l.includes('"message_type":"summary"'));
  if (line === undefined) fail('no summary line');
  return JSON.parse(line) as Record<string, unknown>;
}

/**
 * A chain disk of `size` bytes (`image`'s, or random): first backup, then three rounds
 * of 1 % of its blocks changed and a backup; the median round is reported, restic's
 * two backups of the same data beside it when an image is given.
 */
async function chainIncremental(size: number, key: string, image: Buffer | undefined): Promise<void> {
  const vm = path.join(ROOT, 'vm');
  fs.mkdirSync(vm, { recursive: true });
  const diskPath = path.join(vm, 'disk.chain');
  const disk = await Disk.create(diskPath, { size, blockSize: 64 * 1024 });
  for (let off = 0; off < size; off += 8 * MiB) await disk.write(off, image === undefined ? randomBytes(8 * MiB) : image.subarray(off, off + 8 * MiB));
  await disk.close();
  const repo3 = path.join(ROOT, 'repo-chain');
  await deltadisk('repo', 'init', repo3);
  quiet();
  const c1 = await deltadisk('backup', diskPath, '--repo', repo3, '--json');
  const blocks = size / (64 * 1024);
  const changed = Math.round(blocks / 100);
  // Three rounds of: change 1 % of the blocks, back up. The median round is reported
  // (one incremental is a few hundred ms: one device hiccup would decide a single
  // figure). Each backup is restored and compared after the last round: restoring one
  // between rounds meant writing, reading and deleting a gigabyte just before the
  // next timed backup, which then ran up to twice as long on this VM however long
  // the device was left to settle.
  const rounds: { run: Run; summary: Record<string, unknown>; current: string }[] = [];
  for (let round = 0; round < 3; round++) {
    const d2 = await Disk.open(diskPath);
    const picked = new Set<number>();
    while (picked.size < changed) picked.add(randomBytes(4).readUInt32LE(0) % blocks);
    for (const b of picked) await d2.write(b * 64 * 1024 + 512, randomBytes(4096));
    await d2.flush();
    const current = await d2.read(0, Math.min(size, 256 * MiB)).then(async (head) => {
      const h = createHash('sha256').update(head);
      for (let off = head.length; off < size; off += 256 * MiB) h.update(await d2.read(off, Math.min(256 * MiB, size - off)));
      return h.digest('hex');
    });
    await d2.close();
    quiet();
    const run = await deltadisk('backup', diskPath, '--repo', repo3, '--json');
    const summary = summaryOf(run);
    if (Number(summary.bytes_read) > changed * 64 * 1024) fail(`incremental chain backup read ${String(summary.bytes_read)} bytes for ${changed} changed blocks`);
    rounds.push({ run, summary, current });
  }
  for (const r of rounds) await verifyRestore(repo3, r.summary.backup_id as string, 'disk.raw', r.current, ['--flatten']);
  rounds.sort((x, y) => Number(x.summary.total_duration) - Number(y.summary.total_duration));
  const { run: c2, summary: s } = rounds[1]!;
  const in1 = Number(summaryOf(c1).total_duration);
  const in2 = Number(s.total_duration);
  let line = `chain disk of ${size / MiB} MiB: first backup ${c1.seconds.toFixed(2)} s; after changing 1 % of the blocks (${changed}), incremental backup ${c2.seconds.toFixed(2)} s = ${((c2.seconds / c1.seconds) * 100).toFixed(1)} % of the first ` +
    `(inside the process: ${in1.toFixed(2)} s, then ${in2.toFixed(3)} s = ${((in2 / in1) * 100).toFixed(1)} %; median of 3 rounds, inside the process ${rounds.map((r) => Number(r.summary.total_duration).toFixed(3)).join(', ')} s), ${((Number(s.bytes_read) / size) * 100).toFixed(2)} % of the disk read`;
  const vals3: Record<string, number> = { firstSeconds: c1.seconds, secondSeconds: c2.seconds, percentOfFirst: (c2.seconds / c1.seconds) * 100, inProcessPercent: (in2 / in1) * 100, bytesRead: Number(s.bytes_read) };
  if (RESTIC && image !== undefined) {
    // restic has no change map: it reads the whole image again (exported raw, same data).
    const rr = path.join(ROOT, 'restic-chain');
    await restic('init', '--repo', rr);
    const raw = path.join(ROOT, 'chain-state.raw');
    fs.writeFileSync(raw, image);
    quiet();
    const rb1 = await restic('backup', '--repo', rr, raw);
    await deltadisk('export', diskPath, '-o', raw, '--force');
    quiet();
    const rb2 = await restic('backup', '--repo', rr, raw);
    line += ` | restic on the raw image: ${rb1.seconds.toFixed(2)} s, then ${rb2.seconds.toFixed(2)} s (${((rb2.seconds / rb1.seconds) * 100).toFixed(1)} %) | deltadisk's second backup ${(rb2.seconds / c2.seconds).toFixed(1)}x faster`;
    Object.assign(vals3, { resticFirstSeconds: rb1.seconds, resticSecondSeconds: rb2.seconds });
    fs.rmSync(rr, { recursive: true, force: true });
    fs.rmSync(raw, { force: true });
  }
  report(key, line, vals3);
  fs.rmSync(repo3, { recursive: true, force: true });
  fs.rmSync(vm, { recursive: true, force: true });
}

async function main(): Promise<void> {
  process.stdout.write(`deltadisk repository benchmark: ${SIZE / MiB} MiB images in ${ROOT}; ${os.cpus().length} CPUs; node ${process.version} ${NODE_FLAGS.join(' ')} (the executable's options); load ${os.loadavg()[0]!.toFixed(1)}; restic ${RESTIC ? spawnSync('restic', ['version']).stdout.toString().split(' ')[1] : 'not installed'}\n\n`);
  fs.mkdirSync(ROOT, { recursive: true });
  const rnd = path.join(ROOT, 'random.img');
  writeImage(rnd, (_o, piece) => randomBytes(piece.length).copy(piece));
  const half = path.join(ROOT, 'half-zero.img');
  writeImage(half, (o, piece) => (((o / (8 * MiB)) | 0) % 2 === 0 ? piece.fill(0) : randomBytes(piece.length).copy(piece)));
  const rndSha = await sha256File(rnd);
  const halfSha = await sha256File(half);

  // Baselines: the device (write + fsync of the same bytes, both ways) and the hash.
  const bytes = fs.readFileSync(rnd);
  let t = performance.now();
  const copy = path.join(ROOT, 'baseline-copy');
  const fd = fs.openSync(copy, 'w');
  fs.writeSync(fd, bytes);
  fs.fsyncSync(fd);
  fs.closeSync(fd);
  const writeS = (performance.now() - t) / 1000;
  fs.unlinkSync(copy);
  // The same bytes written past the page cache (O_DIRECT, 4 MiB at a time through one
  // aligned buffer), as deltadisk writes packs and restored disks.
  quiet();
  t = performance.now();
  const stage = alignedBuffer(4 * MiB);
  const dfd = fs.openSync(copy, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_DIRECT);
  for (let off = 0; off < bytes.length; off += stage.length) {
    const n = bytes.copy(stage, 0, off, off + stage.length);
    fs.writeSync(dfd, stage, 0, n, off);
  }
  fs.fsyncSync(dfd);
  fs.closeSync(dfd);
  const directS = (performance.now() - t) / 1000;
  fs.unlinkSync(copy);
  quiet();
  const readWriteS = await readWriteSeconds(rnd, bytes);
  t = performance.now();
  for (let off = 0; off < bytes.length; off += MiB) createHash('sha256').update(bytes.subarray(off, off + MiB)).digest();
  const hashS = (performance.now() - t) / 1000;
  report('baseline', `baseline: write+fsync ${rate(SIZE, writeS)} through the page cache, ${rate(SIZE, directS)} direct; reading the image while writing as much, directly: ${readWriteS.toFixed(2)} s (${rate(SIZE, readWriteS)}); SHA-256 ${rate(SIZE, hashS)}`, {
    writeMiBs: SIZE / MiB / writeS,
    directWriteMiBs: SIZE / MiB / directS,
    readWriteSeconds: readWriteS,
    sha256MiBs: SIZE / MiB / hashS,
  });

  // 1. First backup of an incompressible image, then its restore.
  const repo = path.join(ROOT, 'repo');
  await deltadisk('repo', 'init', repo);
  // Every timed step starts on a settled device (bench-util `quiet`), restic's too.
  quiet();
  const b1 = await deltadisk('backup', rnd, '--repo', repo, '--json');
  const id1 = summaryOf(b1).backup_id as string;
  quiet();
  // Both restores start from a cold cache where the benchmark may drop it (see dropCaches).
  const cold = dropCaches();
  const r1 = await verifyRestore(repo, id1, 'random.img', rndSha);
  const repoSize1 = duBytes(path.join(repo, 'packs'));
  let line = `first backup, incompressible: ${b1.seconds.toFixed(2)} s (${rate(SIZE, b1.seconds)}, ${(readWriteS / b1.seconds).toFixed(2)}x the device's read+write), stored ${gib(repoSize1)}, peak RSS ${(b1.maxRssKiB / 1024).toFixed(0)} MiB`;
  const vals: Record<string, number> = {
    seconds: b1.seconds,
    MiBs: SIZE / MiB / b1.seconds,
    storedBytes: repoSize1,
    ratioToDevice: SIZE / MiB / b1.seconds / (SIZE / MiB / Math.min(writeS, directS)),
    ratioToReadWrite: readWriteS / b1.seconds,
  };
  let restoreLine = `restore, incompressible${cold ? ' (cold cache)' : ''}: ${r1.seconds.toFixed(2)} s (${rate(SIZE, r1.seconds)}, ${(readWriteS / r1.seconds).toFixed(2)}x the device's read+write)`;
  const restoreVals: Record<string, number> = { seconds: r1.seconds, MiBs: SIZE / MiB / r1.seconds, ratioToReadWrite: readWriteS / r1.seconds };
  if (RESTIC) {
    const rr = path.join(ROOT, 'restic');
    await restic('init', '--repo', rr);
    quiet();
    const rb = await restic('backup', '--repo', rr, '--json', rnd);
    const rs = duBytes(path.join(rr, 'data'));
    const target = path.join(ROOT, 'restic-restore');
    quiet();
    if (cold) dropCaches();
    const rres = await restic('restore', 'latest', '--repo', rr, '--target', target);
    // restic does not fsync the files it restores (deltadisk's restore returns with
    // them durable): the time until they are is its exit plus a sync.
    const syncStart = performance.now();
    spawnSync('sync');
    const resticDurable = rres.seconds + (performance.now() - syncStart) / 1000;
    if ((await sha256File(path.join(target, rnd))) !== rndSha) fail('restic restore differs');
    fs.rmSync(target, { recursive: true, force: true });
    line += ` | restic ${rb.seconds.toFixed(2)} s (${rate(SIZE, rb.seconds)}), stored ${gib(rs)} | deltadisk ${(rb.seconds / b1.seconds).toFixed(2)}x restic's speed`;
    Object.assign(vals, { resticSeconds: rb.seconds, resticStoredBytes: rs });
    restoreLine +=
      ` | restic ${rres.seconds.toFixed(2)} s (${rate(SIZE, rres.seconds)}), ${resticDurable.toFixed(2)} s until its file is durable` +
      ` | deltadisk ${(rres.seconds / r1.seconds).toFixed(2)}x restic's speed, ${(resticDurable / r1.seconds).toFixed(2)}x to durable`;
    restoreVals.resticSeconds = rres.seconds;
    restoreVals.resticDurableSeconds = resticDurable;
    fs.rmSync(rr, { recursive: true, force: true });
  }
  report('firstBackup', line, vals);
  report('restore', restoreLine, restoreVals);

  // 1b. The same bytes as a file that is not a disk image: content-defined chunks
  // (FastCDC), as restic cuts every file, so restic's first backup above is its peer.
  const asFile = path.join(ROOT, 'random.bin');
  fs.linkSync(rnd, asFile);
  const repoCdc = path.join(ROOT, 'repo-cdc');
  await deltadisk('repo', 'init', repoCdc);
  quiet();
  const bc = await deltadisk('backup', asFile, '--repo', repoCdc, '--json');
  await verifyRestore(repoCdc, summaryOf(bc).backup_id as string, 'random.bin', rndSha);
  let cdcLine = `first backup, incompressible, as a file (content-defined chunks): ${bc.seconds.toFixed(2)} s (${rate(SIZE, bc.seconds)}), stored ${gib(duBytes(path.join(repoCdc, 'packs')))}`;
  if (vals.resticSeconds !== undefined) cdcLine += ` | deltadisk ${(vals.resticSeconds / bc.seconds).toFixed(2)}x restic's speed`;
  report('cdcBackup', cdcLine, { seconds: bc.seconds, MiBs: SIZE / MiB / bc.seconds });
  fs.rmSync(repoCdc, { recursive: true, force: true });
  fs.rmSync(asFile);

  // 2. First backup of a half-zero image: zeros cost nothing to store.
  const repo2 = path.join(ROOT, 'repo-half');
  await deltadisk('repo', 'init', repo2);
  quiet();
  const b2 = await deltadisk('backup', half, '--repo', repo2, '--json');
  await verifyRestore(repo2, summaryOf(b2).backup_id as string, 'half-zero.img', halfSha);
  const s2 = duBytes(path.join(repo2, 'packs'));
  line = `first backup, half zeros: ${b2.seconds.toFixed(2)} s (${rate(SIZE, b2.seconds)}), stored ${gib(s2)} (${((s2 / SIZE) * 100).toFixed(1)} % of the image)`;
  const vals2: Record<string, number> = { seconds: b2.seconds, storedBytes: s2 };
  if (RESTIC) {
    const rr = path.join(ROOT, 'restic-half');
    await restic('init', '--repo', rr);
    quiet();
    const rb = await restic('backup', '--repo', rr, '--json', half);
    const rs = duBytes(path.join(rr, 'data'));
    line += ` | restic ${rb.seconds.toFixed(2)} s, stored ${gib(rs)}`;
    Object.assign(vals2, { resticSeconds: rb.seconds, resticStoredBytes: rs });
    fs.rmSync(rr, { recursive: true, force: true });
  }
  report('halfZero', line, vals2);
  fs.rmSync(repo2, { recursive: true, force: true });

  // 3. A chain disk: first backup, then 1 % of its blocks changed, second backup; at
  // the image's size (with restic beside it), then at any other sizes asked for.
  await chainIncremental(SIZE, 'chainIncremental', bytes);
  for (const mib of CHAIN_MIB) await chainIncremental(mib * MiB, `chainIncremental${mib}MiB`, undefined);

  // 4. Memory: a large sparse image (the holes are read, not stored).
  if (SPARSE > 0) {
    const big = path.join(ROOT, 'sparse.img');
    const bfd = fs.openSync(big, 'w');
    for (let k = 0; k < 8; k++) fs.writeSync(bfd, randomBytes(8 * MiB), 0, 8 * MiB, Math.floor((SPARSE / 8) * k));
    fs.ftruncateSync(bfd, SPARSE);
    fs.closeSync(bfd);
    const repo4 = path.join(ROOT, 'repo-sparse');
    await deltadisk('repo', 'init', repo4);
    const m = await deltadisk('backup', big, '--repo', repo4, '--json');
    const sm = summaryOf(m);
    if (Number(sm.total_bytes_processed) !== SPARSE) fail('sparse backup did not cover the image');
    report('sparse', `sparse ${SPARSE / 2 ** 30} GiB image: backup ${m.seconds.toFixed(1)} s, peak RSS ${(m.maxRssKiB / 1024).toFixed(0)} MiB (limit 300), stored ${gib(duBytes(path.join(repo4, 'packs')))}`, { seconds: m.seconds, peakRssMiB: m.maxRssKiB / 1024 });
    fs.rmSync(repo4, { recursive: true, force: true });
    fs.rmSync(big, { force: true });
  }
  process.stdout.write(`\n${JSON.stringify({ benchmark: 'repository', sizeMiB: SIZE / MiB, results })}\n`);
  if (process.env.DELTADISK_BENCH_DIR === undefined) fs.rmSync(ROOT, { recursive: true, force: true });
}

await main();
