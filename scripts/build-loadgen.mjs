#!/usr/bin/env node
// Compiles the load generator (loadgen/, not product code) into dist/loadgen, where the
// compiled `baton load` finds it. loadgen/ imports a few modules of src/; in dist/ those are
// one level up, so `../src/` becomes `../` in the emitted files. Run by scripts/build.mjs.
import { spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join, resolve } from 'node:path';

const root = resolve(import.meta.dirname, '..');
const tmp = join(root, '.loadgen-build');
const out = join(root, 'dist', 'loadgen');

rmSync(tmp, { recursive: true, force: true });
rmSync(out, { recursive: true, force: true });
const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
const r = spawnSync(process.execPath, [tsc, '-p', join(root, 'tsconfig.loadgen.json')], { stdio: 'inherit' });
if (r.status !== 0) process.exit(r.status ?? 1);

let files = 0;
const copy = (from, to) => {
  mkdirSync(to, { recursive: true });
  for (const name of readdirSync(from)) {
    const src = join(from, name);
    if (statSync(src).isDirectory()) copy(src, join(to, name));
    else if (name.endsWith('.js')) {
      const js = readFileSync(src, 'utf8').replace(/(["'])\.\.\/src\//g, '$1../');
      writeFileSync(join(to, name), js);
      files++;
    }
  }
};
copy(join(tmp, 'loadgen'), out);
cpSync(join(root, 'loadgen', 'scripts'), join(out, 'scripts'), { recursive: true });
rmSync(tmp, { recursive: true, force: true });
console.log(`build: dist/loadgen compiled (${files} files)`);
