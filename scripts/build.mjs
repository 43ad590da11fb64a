#!/usr/bin/env node
// `npm run build`: compiles src/ to dist/ (JavaScript + .d.ts, the `.ts` import specifiers
// rewritten to `.js`) and copies the files the code reads at run time (Lua scripts, SQL,
// anything else under src/ that is not TypeScript). Starts from an empty dist/.
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join, relative, resolve } from 'node:path';
import { buildCommit } from './commit.mjs';

const root = resolve(import.meta.dirname, '..');
const src = join(root, 'src');
const dist = join(root, 'dist');

// `npx baton` in a clone packs this project to install it into npm's cache, which runs `prepare`
// here: dist/ is built already (`npm ci` built it), and rebuilding it emptied it for tens of
// seconds, so other CLI calls failed meanwhile (an outside test). Left as it is.
if (process.env.npm_command === 'exec' && existsSync(join(dist, 'cli', 'main.js'))) {
  console.log('build: dist/ kept (npx is installing this project into its cache)');
  process.exit(0);
}

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

const commit = buildCommit(root);
writeFileSync(join(dist, 'build-info.json'), `${JSON.stringify({ commit })}\n`);
console.log(`build: dist/ compiled, ${copied} asset files copied${commit ? `, commit ${commit}` : ''}`);
