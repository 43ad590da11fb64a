/** A real local HTTP receiver for alert POSTs: keeps each body, can fail the next few or answer late. */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { expect } from 'vitest';
import type { AlertBody } from '../../src/alerts/index.ts';

export interface Receiver {
  url: string;
  bodies: AlertBody[];
  /** Answer the next `n` POSTs with 500. */
  failNext(n: number): void;
  /** Answer each POST this long after it came (its body is kept at once). */
  delayMs: number;
  close(): Promise<void>;
}

export async function startReceiver(): Promise<Receiver> {
  const bodies: AlertBody[] = [];
  let failures = 0;
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      if (failures > 0) {
        failures -= 1;
        res.writeHead(500).end('down');
        return;
      }
      expect(req.method).toBe('POST');
      expect(req.headers['content-type']).toBe('application/json');
      bodies.push(JSON.parse(Buffer.concat(chunks).toString('utf8')) as AlertBody);
      const answer = (): void => void res.writeHead(200, { 'content-type': 'text/plain' }).end('ok');
      if (receiver.delayMs > 0) setTimeout(answer, receiver.delayMs);
      else answer();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  const receiver: Receiver = {
    url: `http://127.0.0.1:${port}/hooks/alerts`,
    bodies,
    failNext: (n) => {
      failures = n;
    },
    delayMs: 0,
    close: () => new Promise((r) => server.close(() => r())),
  };
  return receiver;
}
