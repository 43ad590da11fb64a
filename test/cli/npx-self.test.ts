/**
 * `npx baton` in a clone: npm 11 installs the project itself into its npx cache (a link), which
 * runs its `prepare` script here. That rebuilt dist/ from nothing: the first call took 40-70 s,
 * and dist/ was empty meanwhile, so other CLI calls failed with ERR_MODULE_NOT_FOUND (outside
 * test S7). Under npx (`npm_command=exec`) with dist/ built, the build leaves it as it is.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { expect, it } from 'vitest';

const root = resolve(import.meta.dirname, '..', '..');

it('leaves a built dist/ as it is when npx installs the project (no rebuild, nothing emptied)', () => {
  // (npm ci built dist/ before the tests run.)
  expect(existsSync(join(root, 'dist', 'cli', 'main.js'))).toBe(true);
  const probe = join(root, 'dist', `.npx-probe-${process.pid}`);
  writeFileSync(probe, 'still here');
  try {
    const r = spawnSync(process.execPath, [join(root, 'scripts', 'build.mjs')], {
      env: { ...process.env, npm_command: 'exec' },
      encoding: 'utf8',
    });
    expect(r.status).toBe(0);
    expect(r.stdout).toContain('dist/ kept');
    expect(existsSync(probe)).toBe(true); // a rebuild starts from an empty dist/
  } finally {
    rmSync(probe, { force: true });
  }
});
