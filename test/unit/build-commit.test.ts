/**
 * The commit a build names (`baton --version`, `baton_build_info`): from git in a checkout, from
 * BATON_COMMIT where there is no .git (a container build: outside test QA70-F2, every image said
 * "unknown"), else none.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
// @ts-expect-error: a plain JavaScript build script, typed by its JSDoc
import { buildCommit } from '../../scripts/commit.mjs';

const commitOf = buildCommit as (root: string, env?: NodeJS.ProcessEnv) => string | null;
const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const outside = mkdtempSync(join(tmpdir(), 'baton-nogit-'));
afterAll(() => rmSync(outside, { recursive: true, force: true }));

describe('the commit a build names', () => {
  it('outside a git checkout: BATON_COMMIT, checked and cut to 12 hex digits, else none', () => {
    const env = {};
    expect(commitOf(outside, { ...env, BATON_COMMIT: 'ABCDEF0123456789abcdef0123456789abcdef01' })).toBe(
      'abcdef012345',
    );
    expect(commitOf(outside, { ...env, BATON_COMMIT: ' 1234567 ' })).toBe('1234567');
    expect(commitOf(outside, { ...env, BATON_COMMIT: 'not-a-commit' })).toBeNull();
    expect(commitOf(outside, env)).toBeNull();
  });

  it('in a checkout, git says it (BATON_COMMIT does not override it)', () => {
    const c = commitOf(ROOT, { BATON_COMMIT: '1234567' });
    if (c === null) return; // a clone without .git (a tarball of the repository): nothing to read
    expect(c).toMatch(/^[0-9a-f]{12}$/);
    expect(c).not.toBe('1234567');
  });
});
