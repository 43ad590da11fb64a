/**
 * The admin token never reaches the logs, even at `trace`: not on sign-in (form body), not as
 * a Bearer header, not in a failed attempt, and the cookie value is no token either.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import pino from 'pino';
import { expect, it } from 'vitest';
import { createBaton } from '../../src/app.ts';
import { loadConfig } from '../../src/config/index.ts';

it('keeps the admin token out of every log line', async () => {
  const token = 'tok-' + 'x7Qp'.repeat(8);
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      lines.push(chunk.toString('utf8'));
      done();
    },
  });
  const dir = mkdtempSync(join(tmpdir(), 'baton-logs-'));
  const baton = await createBaton(
    loadConfig({ PORT: '0', HOST: '127.0.0.1', BATON_DATA_DIR: dir, ADMIN_TOKEN: token, LOG_LEVEL: 'trace' }),
    { logger: pino({ level: 'trace' }, sink) },
  );
  try {
    const url = (await baton.start())!;
    const signIn = (t: string) =>
      fetch(`${url}/admin/login`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: `token=${encodeURIComponent(t)}`,
        redirect: 'manual',
      });
    expect((await signIn(token.slice(0, -1))).status).toBe(401);
    const ok = await signIn(token);
    expect(ok.status).toBe(303);
    const cookie = ok.headers.get('set-cookie')!;
    expect(cookie).not.toContain(token);
    expect(
      (await fetch(`${url}/admin/api/stats`, { headers: { authorization: `Bearer ${token}` } })).status,
    ).toBe(200);
    expect(
      (await fetch(`${url}/admin/api/stats?x=1`, { headers: { authorization: `Bearer ${token}` } })).status,
    ).toBe(400);
    expect((await fetch(`${url}/admin`, { headers: { cookie: cookie.split(';')[0]! } })).status).toBe(200);
  } finally {
    await baton.stop();
    rmSync(dir, { recursive: true, force: true });
  }
  expect(lines.length).toBeGreaterThan(0);
  for (const l of lines) expect(l).not.toContain(token.slice(4));
});
