/**
 * The process entry of the `baton` command: runs the CLI with the process's arguments and
 * sets the exit code. `bin/baton.mjs` calls it from the compiled `dist/`.
 * @module
 */
import { run } from './index.ts';

/**
 * Runs `baton` with `process.argv` and sets `process.exitCode`. After a failure the process
 * exits within a second even if a handle some library left open (a reconnecting client, a
 * timer) would keep it alive: it has reported its error, and its output has had time to drain.
 */
export async function main(): Promise<void> {
  const code = await run(process.argv.slice(2));
  process.exitCode = code;
  if (code !== 0) setTimeout(() => process.exit(code), 1000).unref();
}
