/**
 * A body trickling in from an unknown address holds no batch back. Batches wait (up to 1 s) for
 * webhooks of their window still being stored, so that a burst stored slowly on a busy machine
 * is not split; a webhook counts from its headers only when its address recently delivered a
 * stored (signed) webhook, else from when its body is complete. So clients that send headers and
 * then a byte now and then (a slow client, or an attacker without the app secret) delay nobody's
 * replies. Before, each such request held every batch for up to 1 s: a few of them slowed every
 * conversation.
 */
import { connect, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startHarness, type Harness } from '../support/harness.ts';
import { text, webhook } from '../support/payloads.ts';

let h: Harness;
beforeAll(async () => {
  h = await startHarness({ BATON_BUFFER_MS: '100' });
});
afterAll(async () => {
  await h.close();
});

/**
 * Sends a webhook's headers and the start of its body, then one byte every 100 ms, from another
 * loopback address than the signed webhooks' (127.0.0.2).
 */
function trickle(url: string): Socket {
  const { hostname, port } = new URL(url);
  const socket = connect({ port: Number(port), host: hostname, localAddress: '127.0.0.2' });
  socket.on('error', () => undefined);
  socket.write(
    'POST /webhooks/whatsapp HTTP/1.1\r\nHost: baton\r\nContent-Type: application/json\r\n' +
      'Content-Length: 100000\r\n\r\n{"object":"whatsapp_business_account","entry":[',
  );
  const timer = setInterval(() => socket.write(' '), 100);
  socket.on('close', () => clearInterval(timer));
  return socket;
}

describe('bodies trickling in', () => {
  it('hold no batch back: each user is answered as quickly as without them', async () => {
    const sockets: Socket[] = [];
    // A new one every 300 ms (a request in flight longer than 2 s no longer held anything
    // even before), so that one is always fresh.
    sockets.push(trickle(h.url));
    const opener = setInterval(() => sockets.push(trickle(h.url)), 300);
    try {
      await new Promise((r) => setTimeout(r, 200));
      const T0 = Math.floor(Date.now() / 1000);
      const waits: number[] = [];
      for (let i = 0; i < 6; i++) {
        const u = `1555007000${i}`;
        const start = Date.now();
        expect((await h.post(webhook([text(u, 'hi', T0)]))).status).toBe(200);
        await h.until(() => h.graph.sent.some((c) => c.body.to === `+${u}`), 10_000);
        waits.push(Date.now() - start);
      }
      waits.sort((a, b) => a - b);
      // Without the trickles a reply leaves about 100 ms (the window) after its webhook; each
      // batch held back waits out the gate's 1 s.
      expect(waits[3], `waits ${waits.join(', ')} ms`).toBeLessThan(700);
    } finally {
      clearInterval(opener);
      for (const s of sockets) s.destroy();
    }
  }, 60_000);
});
