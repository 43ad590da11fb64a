#!/usr/bin/env node
// Thin launcher: load TypeScript sources through tsx, then hand argv to the CLI.
import { register } from 'tsx/esm/api';

register();
const { run } = await import('../src/cli/index.ts');
process.exitCode = await run(process.argv.slice(2));
