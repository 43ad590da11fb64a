/**
 * Compiled Baton (plain Node) importing a TypeScript module (a `BATON_FLOWS` flow, or
 * `loadgen/`): tsx is registered before the first import, since Node keeps a failed import of a
 * URL failed, and a retry after registering would fail again.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { childEnv } from '../support/procs.ts';

const ROOT = resolve(import.meta.dirname, '../..');
// Inside the checkout, so the compiled file finds tsx in node_modules as dist/ does.
const DIR = join(ROOT, 'test-output', `module-import-${process.pid}`);
afterAll(() => rmSync(DIR, { recursive: true, force: true }));

describe('importModule from compiled code', () => {
  it('loads a TypeScript module on the first try', () => {
    mkdirSync(DIR, { recursive: true });
    const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
    execFileSync(process.execPath, [
      tsc,
      join(ROOT, 'src/config/module.ts'),
      '--outDir',
      DIR,
      '--module',
      'nodenext',
      '--target',
      'es2022',
      '--skipLibCheck',
      '--types',
      'node',
    ]);
    writeFileSync(join(DIR, 'package.json'), '{ "type": "module" }');
    const flow = join(DIR, 'flow.ts');
    writeFileSync(flow, 'const answer: number = 42;\nexport default answer;\n');
    const out = execFileSync(
      process.execPath,
      [
        '--input-type=module',
        '-e',
        `const { importModule } = await import(${JSON.stringify(pathToFileURL(join(DIR, 'module.js')).href)});
         const mod = await importModule(${JSON.stringify(pathToFileURL(flow).href)});
         console.log(mod.default);`,
      ],
      { cwd: DIR, env: childEnv(), encoding: 'utf8' },
    );
    expect(out.trim()).toBe('42');
  }, 30_000);
});
