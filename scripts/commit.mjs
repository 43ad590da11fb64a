// Which commit a build is (src/build-info.ts reads what `npm run build` writes): the version
// alone tells builds apart only when it is bumped.
import { spawnSync } from 'node:child_process';

/**
 * The first 12 hex digits of the commit at `root`: from git, else from `BATON_COMMIT` (a
 * container build, whose context has no .git: the Dockerfile's build argument, outside test
 * QA70-F2), else null (a tarball).
 * @param {string} root
 * @param {NodeJS.ProcessEnv} env
 * @returns {string | null}
 */
export function buildCommit(root, env = process.env) {
  const git = spawnSync('git', ['rev-parse', 'HEAD'], { cwd: root, encoding: 'utf8' });
  const head = git.status === 0 ? git.stdout.trim() : '';
  if (/^[0-9a-f]{40}$/.test(head)) return head.slice(0, 12);
  const given = (env.BATON_COMMIT ?? '').trim().toLowerCase();
  return /^[0-9a-f]{7,40}$/.test(given) ? given.slice(0, 12) : null;
}
