/**
 * Usage errors are one line naming what is wrong and where help is, with exit code 2 (SPEC 6);
 * `--version` prints the version.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { afterEach, beforeEach, describe, expect, it, vi, type MockInstance } from 'vitest';
import { run } from '../../src/cli/index.ts';

let stderr: MockInstance<typeof process.stderr.write>;
let stdout: MockInstance<typeof process.stdout.write>;
const written = (spy: MockInstance): string => spy.mock.calls.map((c) => String(c[0])).join('');

beforeEach(() => {
  stderr = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
  stdout = vi.spyOn(process.stdout, 'write').mockImplementation(() => true);
});

afterEach(() => {
  vi.restoreAllMocks();
});

describe('baton usage errors', () => {
  it.each<[string[], string]>([
    [['bogus'], 'baton: unknown command "bogus" (see baton --help)\n'],
    [['strt'], 'baton: unknown command "strt" (did you mean start? see baton --help)\n'],
    [['version'], 'baton: unknown command "version" (did you mean --version? see baton --help)\n'],
    [['start', '--bogus'], 'baton: unknown option "--bogus" (see baton start --help)\n'],
    [['session', 'show'], 'baton: missing required argument "waId" (see baton session show --help)\n'],
    [['--bogus'], 'baton: unknown option "--bogus" (see baton --help)\n'],
    // A command that needs one, and help for none (outside test L4: they printed the whole help).
    [['session'], 'baton: "baton session" needs a command (see baton session --help)\n'],
    [['lock'], 'baton: "baton lock" needs a command (see baton lock --help)\n'],
    [['flow'], 'baton: "baton flow" needs a command (see baton flow --help)\n'],
    [['help', 'bogus'], 'baton: unknown command "bogus" (see baton --help)\n'],
    // Commander printed the version and ignored the rest (outside test QA105-F2).
    [['--version', 'extra'], 'baton: --version takes nothing else (got "extra")\n'],
    [['session', '-V'], 'baton: --version takes nothing else (got "session")\n'],
    // Commander kept the last, and looked up one channel of two (outside test QA110-F2).
    [
      ['session', 'show', '15550001111', '--channel', 'a', '--channel', 'b'],
      'baton: --channel given twice ("a", "b")\n',
    ],
    [
      ['lock', 'clear', '15550001111', '--channel', 'a', '--channel=b'],
      'baton: --channel given twice ("a", "b")\n',
    ],
    [
      ['flow', 'graph', 'order', '--format', 'svg', '--format', 'dot'],
      'baton: --format given twice ("svg", "dot")\n',
    ],
  ])('%o: one line, exit 2', async (argv, line) => {
    expect(await run(argv, () => undefined)).toBe(2);
    expect(written(stderr)).toBe(line);
    expect(written(stdout)).toBe('');
  });

  it('a bad flag is named before a bad variable (outside test QA11-F8)', async () => {
    vi.stubEnv('PORT', 'abc');
    try {
      expect(await run(['start', '--concurrency', '0'], () => undefined)).toBe(2);
      expect(written(stderr)).toBe('baton: --concurrency must be 1..1000, got "0"\n');
    } finally {
      vi.unstubAllEnvs();
    }
  });

  it('--version prints the version and exits 0', async () => {
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
      version: string;
    };
    expect(await run(['--version'], () => undefined)).toBe(0);
    // With the commit it was built from (here: the checkout's), so builds of one version differ.
    const head = spawnSync('git', ['rev-parse', 'HEAD'], { encoding: 'utf8' });
    expect(written(stdout)).toBe(
      head.status === 0 ? `${pkg.version} (${head.stdout.trim().slice(0, 12)})\n` : `${pkg.version}\n`,
    );
    expect(written(stderr)).toBe('');
  });
});
