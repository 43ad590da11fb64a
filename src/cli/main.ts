/**
 * The process entry of the `baton` command: runs the CLI with the process's arguments and
 * sets the exit code. `bin/baton.mjs` calls it from the compiled `dist/`; run as a script itself
 * (`node dist/cli/main.js worker`, as a supervisor may be told to), it runs the CLI too: it
 * printed nothing and exited 0 (outside test QA89-F4).
 * @module
 */
import { realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { run } from './index.ts';

/**
 * Runs `baton` with `process.argv` and sets `process.exitCode`. After a failure the process
 * exits within a second even if a handle some library left open (a reconnecting client, a
 * timer) would keep it alive: it has reported its error, and its output has had time to drain.
 */
export async function main(): Promise<void> {
  outputMayClose();
  const code = await run(process.argv.slice(2));
  process.exitCode = code;
  if (code !== 0) setTimeout(() => process.exit(code), 1000).unref();
}

/**
 * `baton start | head -3`: once the reader is gone, writes to stdout fail with EPIPE. That is no
 * reason to crash, nor to hang half-stopped (a SIGTERM handler's own log line threw there): the
 * output is dropped and Baton goes on, or stops cleanly when told to.
 */
function outputMayClose(): void {
  for (const stream of [process.stdout, process.stderr]) {
    stream.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'EPIPE' || err.code === 'ERR_STREAM_DESTROYED') return;
      throw err;
    });
  }
}

/** Whether this module is the process's own script (not imported by bin/baton.mjs or a test). */
function isEntry(): boolean {
  const script = process.argv[1];
  if (script === undefined) return false;
  try {
    return realpathSync(script) === realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
}

if (isEntry()) await main();
