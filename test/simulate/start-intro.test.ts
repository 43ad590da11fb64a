/**
 * `simulate --start` says where its embedded Baton can be inspected: the dashboard URL with its
 * admin token, the data directory (for `baton session show` meanwhile), and the buffer window it
 * runs with, which differs from a production Baton's default.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, Writable } from 'node:stream';
import { afterAll, expect, it } from 'vitest';
import { simulate } from '../../src/simulate/index.ts';

const dir = mkdtempSync(join(tmpdir(), 'baton-sim-intro-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const script = join(dir, 'hi.json');
writeFileSync(script, JSON.stringify({ steps: [{ send: 'hi', expect: ['what is your name'] }] }));

async function intro(env: Record<string, string>): Promise<string> {
  let text = '';
  const output = new Writable({
    write(chunk: Buffer, _enc, done) {
      text += chunk.toString();
      done();
    },
  });
  const code = await simulate({ start: true, graphPort: 0, script, env, input: new PassThrough(), output });
  expect(code).toBe(0);
  return text;
}

it('prints the dashboard URL with a generated admin token, the data directory and the buffer window', async () => {
  const text = await intro({});
  const url = /embedded Baton at (http:\/\/127\.0\.0\.1:\d+)/.exec(text)?.[1];
  expect(url).toBeDefined();
  expect(text).toMatch(
    new RegExp(
      `Dashboard: ${url!.replace(/\./g, '\\.')}/admin {2}admin token: [\\w-]{16,} \\(generated; set ADMIN_TOKEN to fix it\\)`,
    ),
  );
  expect(text).toMatch(
    /data: \S*baton-simulate-\w+ \(removed on exit; BATON_DATA_DIR=\S+ baton session show <waId> reads it meanwhile\)/,
  );
  expect(text).toContain('buffer window: 100 ms (BATON_BUFFER_MS; a Baton started without it waits 500 ms)');
});

it('names ADMIN_TOKEN and BATON_BUFFER_MS when the environment sets them', async () => {
  const text = await intro({ ADMIN_TOKEN: 'sim-admin-token', BATON_BUFFER_MS: '500' });
  expect(text).toMatch(/admin token: \(from ADMIN_TOKEN\)/);
  expect(text).toContain('buffer window: 500 ms (BATON_BUFFER_MS)');
});
