/**
 * A real HTTP server playing the shop's API of SPEC section 5b, for the order-status tests:
 * `GET /orders/{number}` and `POST /orders/{number}/cancel`. Every request is recorded with its
 * `Idempotency-Key`. Answers can be scripted per route (`script`), and requests held until the
 * test lets them go (`hold`), so a test can act while an effect is in flight.
 */
import { EventEmitter } from 'node:events';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface ShopCall {
  readonly method: string;
  readonly path: string;
  readonly key: string | undefined;
  /** The answer's status (set once answered; 0 while held or if the client went away). */
  status: number;
  /** When the request arrived (Date.now()). */
  readonly startedAt: number;
  /** When it was answered or the client went away (undefined until then). */
  endedAt?: number;
}

export interface ShopOrderRecord {
  number: string;
  status: string;
  eta?: string;
  map_url?: string;
  events: Array<{ at: string; text: string }>;
}

export interface ScriptedAnswer {
  readonly status: number;
  readonly body?: unknown;
  /** Answer only after this long (past the client's timeout, to exercise it). */
  readonly delayMs?: number;
}

export interface FakeShop {
  readonly url: string;
  readonly calls: ShopCall[];
  readonly orders: Map<string, ShopOrderRecord>;
  /** The next answers of `route` (`GET /orders/ORD-1`), in order, before the default behaviour. */
  script(route: string, ...answers: ScriptedAnswer[]): void;
  /** Holds requests of `route` until the returned function is called. */
  hold(route: string): () => void;
  /** Resolves once `n` requests matching `route` have arrived. */
  waitForCalls(route: string, n: number, timeoutMs?: number): Promise<ShopCall[]>;
  callsTo(route: string): ShopCall[];
  close(): Promise<void>;
}

export async function startFakeShop(): Promise<FakeShop> {
  const calls: ShopCall[] = [];
  const orders = new Map<string, ShopOrderRecord>();
  const scripts = new Map<string, ScriptedAnswer[]>();
  const holds = new Map<string, Promise<void>>();
  const events = new EventEmitter();
  events.setMaxListeners(0);

  const answer = (res: ServerResponse, call: ShopCall, status: number, body?: unknown): void => {
    call.status = status;
    if (res.destroyed) return;
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify(body ?? {}));
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const path = (req.url ?? '/').split('?')[0]!;
    const route = `${req.method} ${path}`;
    const key = req.headers['idempotency-key'];
    const call: ShopCall = {
      method: req.method ?? '',
      path,
      key: typeof key === 'string' ? key : undefined,
      status: 0,
      startedAt: Date.now(),
    };
    calls.push(call);
    res.once('close', () => {
      call.endedAt = Date.now();
    });
    for await (const _chunk of req) {
      // drain the body
    }
    events.emit('call');
    const held = holds.get(route);
    if (held) await held;
    const scripted = scripts.get(route)?.shift();
    if (scripted) {
      if (scripted.delayMs) await new Promise((r) => setTimeout(r, scripted.delayMs));
      return answer(res, call, scripted.status, scripted.body);
    }
    const get = /^GET \/orders\/([^/]+)$/.exec(route);
    if (get) {
      const order = orders.get(decodeURIComponent(get[1]!));
      return order ? answer(res, call, 200, order) : answer(res, call, 404, { error: 'no such order' });
    }
    const cancel = /^POST \/orders\/([^/]+)\/cancel$/.exec(route);
    if (cancel) {
      const order = orders.get(decodeURIComponent(cancel[1]!));
      if (!order) return answer(res, call, 404, { error: 'no such order' });
      if (order.status === 'shipped') return answer(res, call, 409, { error: 'already shipped' });
      order.status = 'cancelled';
      return answer(res, call, 200, { number: order.number, status: 'cancelled' });
    }
    answer(res, call, 404, { error: 'no such route' });
  };

  const server = createServer((req, res) => {
    handle(req, res).catch(() => res.destroy());
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  const callsTo = (route: string): ShopCall[] => calls.filter((c) => `${c.method} ${c.path}` === route);
  return {
    url,
    calls,
    orders,
    script(route, ...answers) {
      scripts.set(route, [...(scripts.get(route) ?? []), ...answers]);
    },
    hold(route) {
      let release!: () => void;
      holds.set(
        route,
        new Promise<void>((r) => {
          release = r;
        }),
      );
      return () => {
        holds.delete(route);
        release();
      };
    },
    callsTo,
    waitForCalls(route, n, timeoutMs = 10_000) {
      return new Promise((resolve, reject) => {
        const check = (): boolean => {
          const got = callsTo(route);
          if (got.length < n) return false;
          cleanup();
          resolve(got);
          return true;
        };
        const timer = setTimeout(() => {
          cleanup();
          reject(new Error(`${route}: ${callsTo(route).length} of ${n} calls in ${timeoutMs} ms`));
        }, timeoutMs);
        const cleanup = (): void => {
          clearTimeout(timer);
          events.off('call', check);
        };
        if (!check()) events.on('call', check);
      });
    },
    close() {
      for (const [route] of holds) holds.delete(route);
      server.closeAllConnections();
      return new Promise((r) => server.close(() => r()));
    },
  };
}

/** An order as the shop knows it. */
export function shopOrder(number: string, extra: Partial<ShopOrderRecord> = {}): ShopOrderRecord {
  return {
    number,
    status: 'in transit',
    eta: '2026-12-01',
    map_url: `https://maps.example/track/${number}`,
    events: [
      { at: '2026-11-28T09:00:00Z', text: 'Packed' },
      { at: '2026-11-29T07:30:00Z', text: 'Left the warehouse' },
    ],
    ...extra,
  };
}
