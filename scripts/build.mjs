#!/usr/bin/env node
// `npm run build`: compiles src/ to dist/ (JavaScript + .d.ts, the `.ts` import specifiers
// rewritten to `.js`) and copies the files the code reads at run time (Lua scripts, SQL,
// anything else under src/ that is not TypeScript). Starts from an empty dist/.
import { spawnSync } from 'node:child_process';
import { cpSync, readdirSync, rmSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join, relative, resolve } from 'node:path';

const root = resolve(import.meta.dirname, '..');
const src = join(root, 'src');
const dist = join(root, 'dist');

rmSync(dist, { recursive: true, force: true });
const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
const r = spawnSync(process.execPath, [tsc, '-p', join(root, 'tsconfig.build.json')], { stdio: 'inherit' });
if (r.status !== 0) process.exit(r.status ?? 1);

let copied = 0;
const walk = (dir) => {
  for (const name of readdirSync(dir)) {
    const file = join(dir, name);
    if (statSync(file).isDirectory()) walk(file);
    else if (!name.endsWith('.ts')) {
      const to = join(dist, relative(src, file));
      cpSync(file, to, { force: true });
      copied++;
    }
  }
};
walk(src);
console.log(`build: dist/ compiled, ${copied} asset files copied`);
