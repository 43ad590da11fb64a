/**
 * A Redis of the test's own (AOF, fsync always) is SIGKILLed and restarted while webhooks
 * pour in. Every acknowledged message must still be in its mailbox exactly once, scheduling
 * must resume, and fencing tokens must keep increasing across the restart.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { StorageUnavailableError } from '../../src/errors.ts';
import type { InboundMessage, SessionKey } from '../../src/model/message.ts';
import { newKey, sleep, text } from './fixtures.ts';
import { afterThisTest, makeBackend, useCleanup } from './harness.ts';
import { describeServices } from '../support/services.ts';

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

function startRedis(port: number, dir: string): Promise<ChildProcess> {
  return new Promise((resolve, reject) => {
    const args = [
      '--port',
      String(port),
      '--bind',
      '127.0.0.1',
      '--appendonly',
      'yes',
      '--appendfsync',
      'always',
    ];
    const p = spawn('redis-server', [...args, '--save', '', '--dir', dir], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    p.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('Ready to accept connections')) resolve(p);
    });
    p.once('exit', (code) => reject(new Error(`redis-server exited with ${code}: ${out}`)));
  });
}

function killHard(p: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (p.exitCode !== null || p.signalCode !== null) return resolve();
    p.once('exit', () => resolve());
    process.kill(p.pid!, 'SIGKILL');
  });
}

describeServices('distributed backend: Redis restart', () => {
  useCleanup();

  it('loses no acknowledged message when an AOF Redis is SIGKILLed and restarted mid-run', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'baton-redis-'));
    const port = await freePort();
    let redis = await startRedis(port, dir);
    afterThisTest(async () => {
      await killHard(redis);
      rmSync(dir, { recursive: true, force: true });
    });
    const { backend, logger } = await makeBackend({
      redisUrl: `redis://127.0.0.1:${port}`,
      commandTimeoutMs: 1000,
    });
    expect(logger.lines.filter((l) => l.msg.includes('DURABILITY'))).toEqual([]);

    const users: SessionKey[] = Array.from({ length: 6 }, () => newKey());
    const fenceBefore = (await backend.acquireLease(users[0]!, 'w', 5000))!;
    await backend.releaseLease(fenceBefore);

    const acked = new Map<string, Set<string>>(users.map((u) => [u.user, new Set()]));
    let ackedCount = 0;
    let refused = 0;
    const deliver = async (webhook: InboundMessage[]): Promise<void> => {
      for (;;) {
        try {
          await backend.ingest({ messages: webhook, statuses: [] });
          for (const m of webhook) acked.get(m.user)!.add(m.id);
          ackedCount += webhook.length;
          return;
        } catch (err) {
          if (!(err instanceof StorageUnavailableError)) throw err;
          refused++;
          await sleep(25); // Meta retries a refused webhook later
        }
      }
    };
    const perUser = 60;
    const senders = users.map(async (u) => {
      for (let i = 0; i < perUser; i += 2) {
        await deliver([text(u, `${i}`), text(u, `${i + 1}`)]);
        await sleep(2);
      }
    });
    const chaos = (async () => {
      while (ackedCount < (users.length * perUser) / 3) await sleep(5);
      await killHard(redis);
      await sleep(300);
      redis = await startRedis(port, dir);
    })();
    await Promise.all([...senders, chaos]);

    expect(refused).toBeGreaterThan(0);
    for (const u of users) {
      const pending = await backend.pending(u, 1000);
      const ids = pending.map((m) => m.id);
      expect(new Set(ids).size, 'no duplicates').toBe(ids.length);
      expect(new Set(ids)).toEqual(acked.get(u.user));
      expect(ids.length).toBe(perUser);
      for (let i = 1; i < pending.length; i++) expect(pending[i]!.seq).toBeGreaterThan(pending[i - 1]!.seq);
    }

    // Scheduling survived: every user is handed out (once).
    const handed = new Set<string>();
    for (let i = 0; i < users.length; i++) {
      const k = await backend.nextReady(AbortSignal.timeout(5000));
      expect(k).not.toBeNull();
      handed.add(k!.user);
    }
    expect(handed).toEqual(new Set(users.map((u) => u.user)));

    // A restarted Redis (new run_id) takes a fresh fence block: tokens never go back.
    const fenceAfter = (await backend.acquireLease(users[0]!, 'w', 5000))!;
    expect(fenceAfter.fence).toBeGreaterThan(fenceBefore.fence);
  }, 60_000);
});
