#!/usr/bin/env node
// The `baton` command: runs the compiled CLI from dist/ (`npm run build` makes it).
import { main } from '../dist/cli/main.js';

await main();
