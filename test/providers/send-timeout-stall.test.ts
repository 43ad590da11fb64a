/**
 * A send whose answer is already in the socket when a stalled process wakes up past its timeout
 * is taken as answered, not timed out (and so not sent again): Node runs timers before it reads
 * sockets, and under CPU hogs a reply Graph had answered at once reached the user twice (outside
 * test QA30-F2). The gateway is another process, so that it answers while this one is stalled.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { postJson } from '../../src/providers/http.ts';

const SERVER = `
const http = require('node:http');
const server = http.createServer((req, res) => {
  req.resume();
  req.on('end', () => setTimeout(() => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end('{"messages":[{"id":"wamid.answered"}]}');
  }, 30));
});
server.listen(0, '127.0.0.1', () => console.log(server.address().port));
`;

/** Blocks this thread without using the CPU, as a process descheduled by busier ones is. */
function stall(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

describe('a send answered while the process was stalled past its timeout', () => {
  let gateway: ChildProcess;
  let url: string;

  beforeAll(async () => {
    gateway = spawn(process.execPath, ['-e', SERVER], { stdio: ['ignore', 'pipe', 'inherit'] });
    const [line] = (await once(gateway.stdout!, 'data')) as [Buffer];
    url = `http://127.0.0.1:${line.toString().trim()}/106/messages`;
  });

  afterAll(() => {
    gateway.kill();
  });

  it('is answered, not timed out', async () => {
    const post = () =>
      postJson(url, { headers: {}, body: { messaging_product: 'whatsapp' }, timeoutMs: 200, label: 'POST' });
    await post(); // a warm keep-alive connection: the next request leaves at once
    for (let i = 0; i < 3; i += 1) {
      const sending = post();
      // Stalled once the request has left and before its answer (30 ms later) is read, for longer
      // than the timeout, in the check phase (as in an I/O callback): the next event-loop turn
      // begins with the timers, the timeout and the answer both due.
      setTimeout(() => setImmediate(() => stall(600)), 5);
      const res = await sending;
      expect(res.status).toBe(200);
      expect(res.json).toEqual({ messages: [{ id: 'wamid.answered' }] });
    }
  });

  it('still times out when the gateway does not answer', async () => {
    const slow = spawn(
      process.execPath,
      ['-e', SERVER.replace('setTimeout(() => {', 'setTimeout(() => { return;')],
      {
        stdio: ['ignore', 'pipe', 'inherit'],
      },
    );
    try {
      const [line] = (await once(slow.stdout, 'data')) as [Buffer];
      const target = `http://127.0.0.1:${line.toString().trim()}/106/messages`;
      await expect(
        postJson(target, { headers: {}, body: {}, timeoutMs: 200, label: 'POST' }),
      ).rejects.toThrow(/timed out after 200 ms/);
    } finally {
      slow.kill();
    }
  });
});
