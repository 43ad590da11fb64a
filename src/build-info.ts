/**
 * Which Baton this is: the package version and, where known, the commit it was built from. Every
 * build says `0.1.0`, so during a rolling upgrade the commit is what tells old processes from new
 * ones (outside test QA66-F3): `baton --version` prints it, `/metrics` has it as
 * `baton_build_info{version, commit}`, and a process logs it at start.
 *
 * The commit comes from `build-info.json`, which `npm run build` writes into `dist/` (from
 * `git rev-parse HEAD`, when the package is built in a git checkout); run from `src/` (tests,
 * `scripts/baton-dev.mjs`), from the checkout's `.git`. Unknown: `null`.
 * @module
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface BuildInfo {
  /** `package.json`'s version. */
  readonly version: string;
  /** The commit, 12 hex digits; null when not known. */
  readonly commit: string | null;
}

let cached: BuildInfo | undefined;

export function buildInfo(): BuildInfo {
  cached ??= { version: packageVersion(), commit: builtFrom() ?? checkedOut() };
  return cached;
}

/** `0.1.0 (3f2a9c1d0e4b)`, or the version alone. */
export function versionLine(): string {
  const { version, commit } = buildInfo();
  return commit === null ? version : `${version} (${commit})`;
}

const here = fileURLToPath(new URL('.', import.meta.url));
const root = join(here, '..');

function packageVersion(): string {
  const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version?: unknown };
  return String(pkg.version);
}

function builtFrom(): string | null {
  try {
    const info = JSON.parse(readFileSync(join(here, 'build-info.json'), 'utf8')) as { commit?: unknown };
    return typeof info.commit === 'string' && /^[0-9a-f]{12}$/.test(info.commit) ? info.commit : null;
  } catch {
    return null;
  }
}

/** The commit `.git/HEAD` names, read without running git. */
function checkedOut(): string | null {
  try {
    const git = join(root, '.git');
    if (!existsSync(git)) return null;
    const head = readFileSync(join(git, 'HEAD'), 'utf8').trim();
    const ref = /^ref: (.+)$/.exec(head)?.[1];
    let sha = ref === undefined ? head : null;
    if (ref !== undefined) {
      const loose = join(git, ref);
      if (existsSync(loose)) sha = readFileSync(loose, 'utf8').trim();
      else {
        const packed = readFileSync(join(git, 'packed-refs'), 'utf8');
        sha =
          packed
            .split('\n')
            .find((l) => l.endsWith(` ${ref}`))
            ?.split(' ')[0] ?? null;
      }
    }
    return sha !== null && /^[0-9a-f]{40}$/.test(sha) ? sha.slice(0, 12) : null;
  } catch {
    return null;
  }
}
