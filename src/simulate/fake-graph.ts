/**
 * A local stand-in for the WhatsApp Cloud API's send endpoint: `POST {base}/{phone_number_id}/messages`
 * (any version prefix) is recorded and answered as Meta answers it, with a fresh `wamid`.
 * Everything else is a Graph-style 404.
 * @module
 */
import { randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { waIdOfTo } from '../providers/channel.ts';

/** One message Baton sent. */
export interface GraphSend {
  readonly phoneNumberId: string;
  readonly wamid: string;
  /** The JSON body Baton POSTed. */
  readonly body: Record<string, unknown>;
  /**
   * The user it is addressed to, as Meta identifies the user: the wa_id (`to` without its `+`),
   * or `recipient` for a business-scoped id. `body.to` keeps what Baton sent (`+1555…`).
   */
  readonly to: string;
  readonly atMs: number;
}

export interface FakeGraphApi {
  /** Base URL to give Baton as `WHATSAPP_API_BASE_URL`. */
  readonly url: string;
  readonly sends: readonly GraphSend[];
  /** Calls `listener` for every send, after it is answered; returns the unsubscribe. */
  onSend(listener: (send: GraphSend) => void): () => void;
  close(): Promise<void>;
}

const ROUTE = /^(?:\/v\d+(?:\.\d+)?)?\/([^/]+)\/messages\/?$/;

function answer(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

function graphError(res: ServerResponse, status: number, message: string, code = 100): void {
  answer(res, status, { error: { message, type: 'OAuthException', code, fbtrace_id: 'SIMULATED' } });
}

/** A wamid as Meta hands them out for sent messages. */
export function outboundWamid(): string {
  return `wamid.HBgL${randomBytes(15).toString('base64url').toUpperCase()}`;
}

/**
 * Starts the fake Graph API on `host:port` (port 0: a free one).
 * @example
 * const graph = await startFakeGraphApi();
 * graph.onSend((s) => console.log(s.to, s.body));
 */
export async function startFakeGraphApi(opts: { port?: number; host?: string } = {}): Promise<FakeGraphApi> {
  const sends: GraphSend[] = [];
  const listeners: ((s: GraphSend) => void)[] = [];
  const sockets = new Set<Socket>();

  const handle = (req: IncomingMessage, res: ServerResponse, raw: Buffer): void => {
    const path = (req.url ?? '/').split('?')[0]!;
    const route = ROUTE.exec(path);
    if (req.method !== 'POST' || !route) {
      graphError(res, 404, `Unknown path components: ${path}`, 2500);
      return;
    }
    let body: unknown;
    try {
      body = JSON.parse(raw.toString('utf8'));
    } catch {
      graphError(res, 400, 'The request body is not JSON');
      return;
    }
    if (typeof body !== 'object' || body === null || Array.isArray(body)) {
      graphError(res, 400, 'The request body is not an object');
      return;
    }
    const b = body as Record<string, unknown>;
    const input = typeof b.to === 'string' ? b.to : typeof b.recipient === 'string' ? b.recipient : undefined;
    if (b.messaging_product !== 'whatsapp' || input === undefined) {
      graphError(res, 400, '(#100) The parameter messaging_product and to (or recipient) are required');
      return;
    }
    // Graph names the user of a phone number by its wa_id: the digits, without the `+`.
    const to = typeof b.to === 'string' ? waIdOfTo(b.to) : input;
    const send: GraphSend = {
      phoneNumberId: decodeURIComponent(route[1]!),
      wamid: outboundWamid(),
      body: b,
      to,
      atMs: Date.now(),
    };
    sends.push(send);
    answer(res, 200, {
      messaging_product: 'whatsapp',
      contacts: [typeof b.to === 'string' ? { input, wa_id: to } : { input, user_id: to }],
      messages: [{ id: send.wamid }],
    });
    for (const l of listeners) l(send);
  };

  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => handle(req, res, Buffer.concat(chunks)));
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, opts.host ?? '127.0.0.1', () => resolve());
  });
  const addr = server.address() as AddressInfo;
  return {
    url: `http://${opts.host ?? '127.0.0.1'}:${addr.port}/v21.0`,
    sends,
    onSend: (l) => {
      listeners.push(l);
      return () => {
        const i = listeners.indexOf(l);
        if (i >= 0) listeners.splice(i, 1);
      };
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
