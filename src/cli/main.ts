/**
 * The process entry of the `baton` command: runs the CLI with the process's arguments and
 * sets the exit code. `bin/baton.mjs` calls it from the compiled `dist/`.
 * @module
 */
import { run } from './index.ts';

/** Runs `baton` with `process.argv` and sets `process.exitCode`. */
export async function main(): Promise<void> {
  process.exitCode = await run(process.argv.slice(2));
}
