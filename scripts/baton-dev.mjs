#!/usr/bin/env node
// `baton` straight from the TypeScript sources (through tsx), for tests and the benchmark:
// they exercise the code as it is in src/, with no build step in between.
import { register } from 'tsx/esm/api';

register();
const { main } = await import('../src/cli/main.ts');
await main();
