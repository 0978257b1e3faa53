/**
 * Where the CLI's words go: results on stdout (human text, or JSON with --json),
 * progress, warnings and errors on stderr. Nothing else in cli/ writes to the
 * streams directly, so a command cannot mix a log line into machine output.
 */
import { isDeltaDiskError } from '../lib/index.js';
import { NotConfirmed } from './confirm.js';
import { ExitCode, exitCodeFor } from './exit-codes.js';

export interface GlobalOptions {
  readonly json: boolean;
  readonly quiet: boolean;
  readonly progress: boolean | undefined;
  readonly yes: boolean;
  readonly allowPath: readonly string[];
}

export class Output {
  readonly json: boolean;
  readonly quiet: boolean;
  readonly #progress: boolean | undefined;

  constructor(o: GlobalOptions) {
    this.json = o.json;
    this.quiet = o.quiet;
    this.#progress = o.progress;
  }

  /** A line of human output (suppressed with --json). */
  line(text = ''): void {
    if (!this.json) process.stdout.write(`${text}\n`);
  }

  /** The machine result: one JSON document on stdout (only with --json). */
  result(value: unknown): void {
    if (this.json) process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
  }

  /** One JSON line on stdout (streams of events, e.g. `io` and backups). */
  jsonLine(value: unknown): void {
    if (this.json) process.stdout.write(`${JSON.stringify(value)}\n`);
  }

  /** One JSON line on stderr (only with --json): errors about single items of a long operation. */
  jsonErrorLine(value: unknown): void {
    if (this.json) process.stderr.write(`${JSON.stringify(value)}\n`);
  }

  /** A note for a human on stderr (not with --quiet). */
  info(text: string): void {
    if (!this.quiet && !this.json) process.stderr.write(`${text}\n`);
  }

  warn(text: string): void {
    if (this.json) process.stderr.write(`${JSON.stringify({ type: 'warning', message: text })}\n`);
    else process.stderr.write(`deltadisk: warning: ${text}\n`);
  }

  /** Progress bars: on a TTY, not with --json or --quiet, unless forced with --progress. */
  get showProgress(): boolean {
    if (this.#progress !== undefined) return this.#progress;
    return !this.json && !this.quiet && process.stderr.isTTY === true;
  }

  /** Reports an error on stderr and returns the exit code for it. */
  error(err: unknown): number {
    if (err instanceof NotConfirmed) {
      // Nothing failed (no DeltaDiskError), but with --json still an error object like every other.
      if (this.json) process.stderr.write(`${JSON.stringify({ type: 'error', code: 'NOT_CONFIRMED', message: err.message })}\n`);
      else process.stderr.write(`deltadisk: ${err.message}\n`);
      return err.exitCode;
    }
    if (isDeltaDiskError(err)) {
      if (this.json) process.stderr.write(`${JSON.stringify({ type: 'error', ...err.toJSON() })}\n`);
      else process.stderr.write(`deltadisk: error: ${err.message} [${err.code}]\n`);
      return exitCodeFor(err.code);
    }
    const message = err instanceof Error ? err.message : String(err);
    if (this.json) process.stderr.write(`${JSON.stringify({ type: 'error', code: 'INTERNAL', message })}\n`);
    else {
      process.stderr.write(`deltadisk: internal error: ${message}\n`);
      if (err instanceof Error && err.stack && process.env.DELTADISK_DEBUG) process.stderr.write(`${err.stack}\n`);
    }
    return ExitCode.FAILURE;
  }
}
