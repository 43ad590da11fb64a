/**
 * The load generator's admin API reads ride out a restarting target (network errors, 503) for
 * a while, as its webhooks do, so a run that kills and restarts Baton still gets its verdict.
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { expect, it } from 'vitest';
import { getJson } from '../../loadgen/index.ts';

it('reads the admin API through 503s and a refused connection', async () => {
  let calls = 0;
  const server = createServer((req, res) => {
    calls += 1;
    if (calls <= 2) {
      res.writeHead(503).end('{"error":"restarting"}');
      return;
    }
    res
      .writeHead(200, { 'content-type': 'application/json' })
      .end(JSON.stringify({ auth: req.headers.authorization }));
  });
  // Nothing listens at first: the first attempts are refused.
  const port = await new Promise<number>((res) => {
    const probe = createServer().listen(0, '127.0.0.1', () => {
      const p = (probe.address() as AddressInfo).port;
      probe.close(() => res(p));
    });
  });
  setTimeout(() => server.listen(port, '127.0.0.1'), 300);
  try {
    const answer = await getJson(`http://127.0.0.1:${port}/admin/api/stats`, 't');
    expect(answer).toEqual({ status: 200, json: { auth: 'Bearer t' } });
    expect(calls).toBe(3);
  } finally {
    server.close();
  }
});
