/**
 * A shop API stub for `baton simulate --shop-stub` and `baton load --shop-stub` (SPEC section
 * 5b's `ORDER_API_URL`), so the order-status example can be tried and load-tested without a shop:
 *
 * - `GET /orders/{number}`: `ORD-404..` -> `404`; otherwise `200` with the order. A number
 *   whose last digit is odd is `shipped` (with an `eta` and a `map_url`), else `processing`.
 * - `POST /orders/{number}/cancel`: `409` when shipped, else `200` `{number, status: "cancelled"}`.
 *
 * Every request's `Idempotency-Key` is recorded: the report says how many cancels reached the
 * shop under distinct keys per order (more than one is a duplicated effect).
 * @module
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

export interface ShopStubStats {
  readonly lookups: number;
  readonly cancels: number;
  /** Requests without an `Idempotency-Key`. */
  readonly withoutKey: number;
  /** Orders whose cancel arrived under more than one key (one effect started twice). */
  readonly ordersCancelledTwice: readonly string[];
}

export interface ShopStub {
  readonly url: string;
  stats(): ShopStubStats;
  close(): Promise<void>;
}

function orderOf(number: string): Record<string, unknown> | null {
  if (!/^ORD-\d{5}$/.test(number) || number.startsWith('ORD-404')) return null;
  const shipped = Number(number.at(-1)) % 2 === 1;
  return {
    number,
    status: shipped ? 'shipped' : 'processing',
    ...(shipped ? { eta: '2026-12-03', map_url: `https://maps.example.com/track/${number}.png` } : {}),
    events: [
      { at: '2026-11-28T09:00:00Z', text: 'Order received' },
      ...(shipped ? [{ at: '2026-11-29T14:30:00Z', text: 'Handed to the carrier' }] : []),
    ],
  };
}

/** Starts the stub on a free port of 127.0.0.1. */
export async function startShopStub(): Promise<ShopStub> {
  let lookups = 0;
  let withoutKey = 0;
  const cancelKeys = new Map<string, Set<string>>();
  const cancelled = new Set<string>();
  const sockets = new Set<Socket>();
  const answer = (res: ServerResponse, status: number, body: unknown): void => {
    const text = JSON.stringify(body);
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
    res.end(text);
  };
  const handle = (req: IncomingMessage, res: ServerResponse): void => {
    const path = (req.url ?? '/').split('?')[0]!;
    const key = req.headers['idempotency-key'];
    if (typeof key !== 'string' || key === '') withoutKey++;
    const get = /^\/orders\/([^/]+)$/.exec(path);
    if (req.method === 'GET' && get) {
      lookups++;
      const number = decodeURIComponent(get[1]!);
      const order = orderOf(number);
      if (!order) return answer(res, 404, { error: 'no such order' });
      return answer(res, 200, cancelled.has(number) ? { ...order, status: 'cancelled' } : order);
    }
    const cancel = /^\/orders\/([^/]+)\/cancel$/.exec(path);
    if (req.method === 'POST' && cancel) {
      const number = decodeURIComponent(cancel[1]!);
      let keys = cancelKeys.get(number);
      if (!keys) cancelKeys.set(number, (keys = new Set()));
      keys.add(typeof key === 'string' ? key : '');
      const order = orderOf(number);
      if (!order) return answer(res, 404, { error: 'no such order' });
      if (order.status === 'shipped') return answer(res, 409, { error: 'already shipped' });
      cancelled.add(number);
      return answer(res, 200, { number, status: 'cancelled' });
    }
    answer(res, 404, { error: 'no such route' });
  };
  const server = createServer((req, res) => {
    req.resume();
    req.on('end', () => handle(req, res));
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    stats: () => ({
      lookups,
      cancels: [...cancelKeys.values()].reduce((n, k) => n + k.size, 0),
      withoutKey,
      ordersCancelledTwice: [...cancelKeys].filter(([, k]) => k.size > 1).map(([n]) => n),
    }),
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
