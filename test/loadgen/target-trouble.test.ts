/**
 * The verdict when the target is in trouble: a Baton that stored messages but has not processed
 * them yet (its queue still holds them) has lost nothing; a Baton that died mid-run still gets a
 * verdict, from what the load generator saw, naming the admin API as unreachable. A fake target
 * plays Baton's HTTP side, so each case is exact.
 */
import { createServer, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { runLoad, type LoadProgress } from '../../loadgen/index.ts';
import { formatReport, progressLine } from '../../loadgen/cli.ts';

interface FakeTarget {
  readonly url: string;
  /** Webhooks answered 200 so far. */
  stored: number;
  /** Stops answering anything, as a killed process does. */
  die(): Promise<void>;
}

let servers: Server[] = [];

afterEach(async () => {
  for (const s of servers) await new Promise((r) => s.close(r));
  servers = [];
});

/** A target that stores every webhook and processes none; `onWebhook` runs after each answer. */
async function fakeTarget(onWebhook: (t: FakeTarget) => void = () => undefined): Promise<FakeTarget> {
  const sockets = new Set<Socket>();
  const json = (res: ServerResponse, status: number, body: unknown): void => {
    res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
  };
  const server = createServer((req, res) => {
    const path = req.url ?? '';
    req.resume();
    req.on('end', () => {
      if (path === '/healthz') return json(res, 200, { ok: true });
      if (path === '/admin/api/stats') return json(res, 200, { queue_depth: target.stored, locks_held: 32 });
      if (path.startsWith('/admin/api/dead-letters')) return json(res, 200, { dead_letters: [] });
      if (path.startsWith('/admin/api/sessions/')) return json(res, 404, { error: 'not found' });
      if (path === '/webhooks/whatsapp') {
        target.stored += 1;
        json(res, 200, { ok: true });
        onWebhook(target);
        return;
      }
      json(res, 404, {});
    });
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  servers.push(server);
  const target: FakeTarget = {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    stored: 0,
    die: async () => {
      servers = servers.filter((s) => s !== server);
      const closed = new Promise((r) => server.close(r));
      for (const s of sockets) s.destroy();
      await closed;
    },
  };
  return target;
}

describe('load verdict with the target in trouble', () => {
  it('messages Baton stored and still holds are pending in Baton, not lost; not clean', async () => {
    const target = await fakeTarget();
    const report = await runLoad({
      url: target.url,
      adminToken: 't',
      users: 3,
      replyTimeoutMs: 200,
      settleTimeoutMs: 200,
      sinkPort: 0,
    });
    const v = report.verdict;
    // Each user's first stage (a message or a burst) is stored; no reply comes.
    expect(target.stored).toBeGreaterThanOrEqual(3);
    expect(v).toMatchObject({
      clean: false,
      usersCompleted: 0,
      lost: 0,
      lostMessages: 0,
      pendingMessages: target.stored,
      waitingReplies: 3,
    });
    const text = formatReport(report, 'none').join('\n');
    expect(text).toMatch(/verdict: NOT CLEAN \(0\/3 users completed their order\)/);
    expect(text).toMatch(new RegExp(`pending in Baton\\s+${target.stored}\\b`));
    expect(text).not.toMatch(/no transition record or dead letter/);
  });

  it('a target that dies mid-run and stays down still gets a verdict naming the admin API', async () => {
    const target = await fakeTarget((t) => {
      if (t.stored === 2) void t.die();
    });
    const seen: LoadProgress[] = [];
    const report = await runLoad({
      onProgress: (p) => seen.push(p),
      progressIntervalMs: 20,
      url: target.url,
      adminToken: 't',
      users: 4,
      rampMs: 300,
      replyTimeoutMs: 200,
      settleTimeoutMs: 200,
      adminRetryMs: 300,
      sinkPort: 0,
    });
    const v = report.verdict;
    expect(v.clean).toBe(false);
    expect(v.adminUnreachable).toContain(`${target.url}/admin/api/stats`);
    expect(v.lostMessages).toBe(0);
    expect(v.messages.rejected).toBeGreaterThan(0);
    const text = formatReport(report, 'none').join('\n');
    expect(text).toMatch(/verdict: NOT CLEAN/);
    expect(text).toMatch(/admin API .*unreachable/);
    // The progress bar tells users who gave up from users who got every reply.
    const last = seen.at(-1)!;
    expect(last).toMatchObject({ usersDone: 4, usersGaveUp: 4 });
    expect(progressLine(last)).toContain('users 4/4 (4 gave up)');
  });
});
