/**
 * A worker told to stop while a send hangs (a gateway that takes the request and never answers)
 * abandons it after a grace instead of waiting out the 30 s send timeout: Docker sends SIGKILL 10 s
 * after SIGTERM (outside test QA37-F8: a worker's SIGTERM took 26.6 s). The reply stays unsent,
 * and the next holder sends it.
 */
import { createServer, type IncomingMessage } from 'node:http';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { CloudApiSender } from '../../src/providers/cloud-api/send.ts';
import { storeWithHi, testEngine } from '../support/engine.ts';

const stops: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const stop of stops.splice(0).reverse()) await stop();
});

describe('a stopping worker with a send in flight', () => {
  it('abandons it after its grace; the reply stays unsent and the next holder sends it', async () => {
    const hung: IncomingMessage[] = [];
    const gateway = createServer((req) => void hung.push(req)); // never answers
    await new Promise<void>((r) => gateway.listen(0, '127.0.0.1', r));
    stops.push(async () => {
      gateway.closeAllConnections();
      await new Promise((r) => gateway.close(r));
    });
    const port = (gateway.address() as { port: number }).port;
    const sender = new CloudApiSender({ baseUrl: `http://127.0.0.1:${port}/v21.0`, timeoutMs: 30_000 });

    const { backend, key } = await storeWithHi();
    stops.push(() => backend.close());
    const lines: string[] = [];
    const logger = pino({ level: 'warn' }, { write: (line: string) => void lines.push(line) });
    const engine = testEngine(backend, { send: (m, o) => sender.send(m, o), stopSendGraceMs: 1000, logger });
    engine.start(1);
    const deadline = Date.now() + 10_000;
    while (hung.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    expect(hung).toHaveLength(1);

    const t0 = Date.now();
    await engine.stop();
    expect(Date.now() - t0).toBeLessThan(5_000);
    const [reply] = await backend.outbound(key);
    expect(reply).toMatchObject({ status: 'pending', callbackData: 'baton:order:ask_name:1' });
    expect(reply!.lastError).toMatch(/aborted/);
    // Said as what it is: abandoned, maybe delivered, not "refused" (outside test QA89-F2).
    expect(lines.filter((l) => l.includes('send abandoned'))).toHaveLength(1);
    expect(lines.filter((l) => l.includes('send refused'))).toEqual([]);

    // The next holder sends it.
    const sent: string[] = [];
    const next = testEngine(backend, {
      send: async (m) => (sent.push(m.callbackData), { providerMessageId: `wamid.${m.id}` }),
      sendBackoffMs: 10,
    });
    const until = Date.now() + 15_000;
    while (sent.length === 0 && Date.now() < until) {
      await next.runSession(key);
      if (sent.length === 0) await new Promise((r) => setTimeout(r, 200));
    }
    expect(sent).toEqual(['baton:order:ask_name:1']);
    expect((await backend.outbound(key))[0]).toMatchObject({ status: 'sent' });
  }, 40_000);
});
