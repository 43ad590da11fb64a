/**
 * The process entry of the `baton` command: runs the CLI with the process's arguments and
 * sets the exit code. `bin/baton.mjs` calls it from the compiled `dist/`.
 * @module
 */
import { run } from './index.ts';

/**
 * Runs `baton` with `process.argv` and sets `process.exitCode`. A failure exits at once: a
 * handle some library left open (a reconnecting client, a timer) must not keep a process that
 * has reported its error alive.
 */
export async function main(): Promise<void> {
  const code = await run(process.argv.slice(2));
  process.exitCode = code;
  if (code !== 0) process.exit(code);
}
