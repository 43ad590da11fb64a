import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadFlows } from '../../src/app.ts';
import { ConfigError } from '../../src/errors.ts';

const dir = mkdtempSync(join(tmpdir(), 'baton-flows-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const define = resolve(import.meta.dirname, '../../src/flow/define.ts');

describe('BATON_FLOWS', () => {
  it('serves the reference bot by default', async () => {
    expect((await loadFlows(undefined)).map((f) => f.id)).toEqual(['order']);
  });

  it('loads every flow a module exports', async () => {
    const file = join(dir, 'flows.ts');
    writeFileSync(
      file,
      `import { defineFlow } from ${JSON.stringify(define)};
       const step = { say: 'x', accepts: 'any' as const, to: [], on: (_i: unknown, c: { retry(): never }) => c.retry() };
       export const a = defineFlow({ id: 'alpha', start: 's', steps: { s: step } });
       export default defineFlow({ id: 'beta', start: 's', steps: { s: step } });`,
    );
    expect((await loadFlows(file)).map((f) => f.id).sort()).toEqual(['alpha', 'beta']);
  });

  it('refuses two flows with one id (outside test QA18-F1: the one exported last was served)', async () => {
    const file = join(dir, 'twice.ts');
    writeFileSync(
      file,
      `import { defineFlow } from ${JSON.stringify(define)};
       const step = { say: 'x', accepts: 'any' as const, to: [], on: (_i: unknown, c: { retry(): never }) => c.retry() };
       export default defineFlow({ id: 'same', start: 'a', steps: { a: step } });
       export const other = defineFlow({ id: 'same', start: 'z', steps: { z: step } });`,
    );
    await expect(loadFlows(file)).rejects.toThrow(
      /^BATON_FLOWS: ".*twice.ts" exports two flows with the id "same": give each flow its own id$/,
    );
  });

  it('refuses a router that names a flow the module does not serve', async () => {
    const file = join(dir, 'routed.ts');
    const router = resolve(import.meta.dirname, '../../src/flow/router.ts');
    writeFileSync(
      file,
      `import { defineFlow } from ${JSON.stringify(define)};
       import { flowRouter } from ${JSON.stringify(router)};
       const step = { say: 'x', accepts: 'any' as const, to: [], on: (_i: unknown, c: { retry(): never }) => c.retry() };
       export default defineFlow({ id: 'alpha', start: 's', steps: { s: step } });
       export const router = flowRouter({ keywords: { book: 'bookings', hi: 'alpha' } });`,
    );
    await expect(loadFlows(file)).rejects.toThrow(
      /^BATON_FLOWS: .*its router names flow "bookings", which it does not export \(it serves "alpha"\)/,
    );
  });

  it('names BATON_FLOWS in one line when the module is missing or exports no flow', async () => {
    await expect(loadFlows(join(dir, 'missing.ts'))).rejects.toThrow(ConfigError);
    await expect(loadFlows(join(dir, 'missing.ts'))).rejects.toThrow(/^BATON_FLOWS: cannot load/);
    // A path mistyped is said to be one (outside test QA18-F4: it was a hint about package.json).
    await expect(loadFlows('/tmp/no-such-dir-for-baton/flow.ts')).rejects.toThrow(
      /^BATON_FLOWS: cannot load "\/tmp\/no-such-dir-for-baton\/flow.ts": no such file/,
    );
    const empty = join(dir, 'empty.ts');
    writeFileSync(empty, 'export const nothing = 1;');
    await expect(loadFlows(empty)).rejects.toThrow(/^BATON_FLOWS: .* exports no flow/);
    // Named by a CLI flag (`flow graph --flows`), the error names the flag the user gave.
    await expect(loadFlows(empty, '--flows')).rejects.toThrow(/^--flows: .* exports no flow/);
  });
});
