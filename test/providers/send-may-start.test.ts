/**
 * A send's last check (`SendOptions.mayStart`: the engine's lease) is made when the request is
 * about to be written to its connection, not when it is queued: opening a connection can take
 * seconds (a gateway's accept queue full: the SYN is retried a second later), and a worker whose
 * lease lapsed meanwhile sent a reply after the replies a newer holder had sent (outside test
 * QA57-F1: a name prompt reached a user after the order's confirmation).
 *
 * The gateway is another process, SIGSTOPped with its accept queue full, so that opening a
 * connection to it takes a SYN retry, as under a real overload.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { connect, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { CloudApiSender } from '../../src/providers/cloud-api/send.ts';
import { SendError } from '../../src/errors.ts';
import type { OutboundRecord } from '../../src/model/session.ts';

const GATEWAY = `
const http = require('node:http');
const server = http.createServer((req, res) => {
  req.resume();
  req.on('end', () => {
    console.log('REQUEST');
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end('{"messages":[{"id":"wamid.sent"}]}');
  });
});
server.listen({ port: 0, host: '127.0.0.1', backlog: 1 }, () => console.log('PORT ' + server.address().port));
`;

const record: OutboundRecord = {
  id: 'ch:15550001:1',
  channel: '106540352242922',
  user: '15550001',
  seq: 1,
  flow: 'order',
  step: 'ask_name',
  version: 1,
  to: '15550001',
  body: { type: 'text', text: 'What is your name?' },
  callbackData: 'baton:order:ask_name:1',
  isPrompt: true,
  status: 'pending',
  attempts: 0,
  createdAt: 0,
};

/** A gateway whose connections take a SYN retry (about a second) to open; `requests()` counts what it received. */
async function slowToConnect(): Promise<{
  url: string;
  requests: () => number;
  resume: () => void;
  stop: () => void;
}> {
  const child: ChildProcess = spawn(process.execPath, ['-e', GATEWAY], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  while (!/PORT \d+/.test(out)) await once(child.stdout!, 'data');
  const port = Number(/PORT (\d+)/.exec(out)![1]);
  // Stopped, it accepts nothing: two connections fill its queue (backlog 1), and the next SYN is dropped.
  process.kill(child.pid!, 'SIGSTOP');
  const fillers: Socket[] = [];
  for (let i = 0; i < 3; i += 1) fillers.push(connect(port, '127.0.0.1').on('error', () => undefined));
  await new Promise((r) => setTimeout(r, 200));
  return {
    url: `http://127.0.0.1:${port}`,
    requests: () => out.split('REQUEST').length - 1,
    resume: () => {
      process.kill(child.pid!, 'SIGCONT');
      for (const f of fillers) f.destroy();
    },
    stop: () => {
      process.kill(child.pid!, 'SIGCONT');
      child.kill();
    },
  };
}

describe('a send whose check turns false while its connection opens', () => {
  let stop = (): void => undefined;
  afterEach(() => stop());

  it('is not written: it fails as retryable with nothing delivered', async () => {
    const gateway = await slowToConnect();
    stop = gateway.stop;
    const sender = new CloudApiSender({ baseUrl: gateway.url, accessToken: 't' });
    let leaseHeld = true;
    const started = Date.now();
    const sending = sender.send(record, { mayStart: () => leaseHeld });
    // Still held when the send was called; lapsed while the SYN waits for its retry.
    setTimeout(() => (leaseHeld = false), 300);
    setTimeout(() => gateway.resume(), 400);
    const err = await sending.then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(SendError);
    expect(err).toMatchObject({ retryable: true, unknownOutcome: false });
    expect(Date.now() - started).toBeGreaterThanOrEqual(500); // it did wait for the connection
    await new Promise((r) => setTimeout(r, 300));
    expect(gateway.requests()).toBe(0);
  });

  it('is written when the check still holds then', async () => {
    const gateway = await slowToConnect();
    stop = gateway.stop;
    const sender = new CloudApiSender({ baseUrl: gateway.url, accessToken: 't' });
    setTimeout(() => gateway.resume(), 400);
    await expect(sender.send(record, { mayStart: () => true })).resolves.toEqual({
      providerMessageId: 'wamid.sent',
    });
    expect(gateway.requests()).toBe(1);
  });
});
