/**
 * Sends signed webhooks to Baton the way Meta does: `POST /webhooks/whatsapp` with
 * `X-Hub-Signature-256` over the raw body, re-delivering on network errors, 429 and 5xx (Meta
 * retries any answer that is not 200). Keeps connections alive and bounds requests in flight,
 * so the latency it measures is Baton's, not a queue inside the client.
 * @module
 */
import { Agent, request } from 'node:http';
import { performance } from 'node:perf_hooks';
import { signMetaBody } from '../src/providers/index.ts';

/** How one webhook delivery went. */
export interface PostResult {
  /** The final HTTP status; 0 when no answer came (network error or timeout). */
  readonly status: number;
  /** Time from sending the final attempt to its answer, milliseconds. */
  readonly ms: number;
  /** `performance.now()` when the first attempt was sent. */
  readonly sentAt: number;
  readonly attempts: number;
  /** The answer's body (JSON text) or the network error. */
  readonly detail: string;
}

export interface WebhookClientOptions {
  /** Baton's base URL, e.g. `http://127.0.0.1:3000`. */
  readonly baseUrl: string;
  /** The Meta app secret; without one no signature header is sent. */
  readonly secret?: string | undefined;
  /** Requests in flight at most (default 64). */
  readonly maxInflight?: number;
  /** Re-deliveries after a retryable failure (default 3). */
  readonly retries?: number;
  /**
   * Beyond `retries`, keep re-delivering for this long after the first attempt, backing off up
   * to 2 s (default 0): Meta retries for days, so a Baton killed and restarted mid-run still gets
   * every webhook.
   */
  readonly retryForMs?: number;
  /** Per-attempt timeout, milliseconds (default 30 s). */
  readonly timeoutMs?: number;
}

/** A counting semaphore, first come first served, that can hand out several slots at once. */
class Gate {
  private free: number;
  private readonly waiting: { n: number; go: () => void }[] = [];
  constructor(readonly size: number) {
    this.free = size;
  }
  async take(n = 1): Promise<void> {
    if (this.waiting.length === 0 && this.free >= n) {
      this.free -= n;
      return;
    }
    await new Promise<void>((go) => this.waiting.push({ n, go }));
  }
  give(n = 1): void {
    this.free += n;
    while (this.waiting.length > 0 && this.free >= this.waiting[0]!.n) {
      const next = this.waiting.shift()!;
      this.free -= next.n;
      next.go();
    }
  }
}

/**
 * A signed-webhook client for one Baton.
 *
 * @example
 * ```ts
 * const client = new WebhookClient({ baseUrl: 'http://127.0.0.1:3000', secret: 'app-secret' });
 * const r = await client.post(body); // r.status === 200 once Baton stored it
 * client.close();
 * ```
 */
export class WebhookClient {
  private readonly url: URL;
  private readonly agent: Agent;
  private readonly gate: Gate;
  private readonly retries: number;
  private readonly timeoutMs: number;

  constructor(private readonly o: WebhookClientOptions) {
    this.url = new URL('/webhooks/whatsapp', o.baseUrl);
    const max = o.maxInflight ?? 64;
    this.agent = new Agent({ keepAlive: true, maxSockets: max });
    this.gate = new Gate(max);
    this.retries = o.retries ?? 3;
    this.timeoutMs = o.timeoutMs ?? 30_000;
  }

  /** Delivers `body` (re-delivering as Meta would) and reports the final answer. */
  async post(body: unknown): Promise<PostResult> {
    return (await this.postAll([body]))[0]!;
  }

  /**
   * Delivers `bodies` at the same moment: their slots are taken together, so a burst leaves
   * together even when the client is at its in-flight limit. Re-deliveries go one by one.
   */
  async postAll(bodies: readonly unknown[]): Promise<PostResult[]> {
    const n = Math.min(bodies.length, this.gate.size);
    await this.gate.take(n);
    const first = bodies.map(async (body, i) => {
      const raw = Buffer.from(JSON.stringify(body));
      const headers = this.headers(raw);
      const started = performance.now();
      let answer: { status: number; detail: string };
      if (i < n) {
        try {
          answer = await this.once(raw, headers);
        } finally {
          this.gate.give();
        }
      } else {
        answer = await this.attempt(raw, headers);
      }
      return this.retry(raw, headers, started, answer);
    });
    return Promise.all(first);
  }

  private headers(raw: Buffer): Record<string, string | number> {
    const headers: Record<string, string | number> = {
      'content-type': 'application/json',
      'content-length': raw.length,
    };
    if (this.o.secret) headers['x-hub-signature-256'] = signMetaBody(raw, this.o.secret);
    return headers;
  }

  private async attempt(
    raw: Buffer,
    headers: Record<string, string | number>,
  ): Promise<{ status: number; detail: string }> {
    await this.gate.take();
    try {
      return await this.once(raw, headers);
    } finally {
      this.gate.give();
    }
  }

  /** Re-delivers after a retryable answer, as Meta does, with backoff. */
  private async retry(
    raw: Buffer,
    headers: Record<string, string | number>,
    sentAt: number,
    answer: { status: number; detail: string },
  ): Promise<PostResult> {
    let started = sentAt;
    let { status, detail } = answer;
    for (let attempt = 1; ; attempt += 1) {
      const ms = performance.now() - started;
      const retryable = status === 0 || status === 429 || status >= 500;
      const delay = Math.min(2000, 100 * 2 ** (attempt - 1));
      const inWindow = performance.now() + delay - sentAt < (this.o.retryForMs ?? 0);
      if (!retryable || (attempt > this.retries && !inWindow))
        return { status, ms, sentAt, attempts: attempt, detail };
      await new Promise((r) => setTimeout(r, delay));
      started = performance.now();
      ({ status, detail } = await this.attempt(raw, headers));
    }
  }

  private once(
    raw: Buffer,
    headers: Record<string, string | number>,
  ): Promise<{ status: number; detail: string }> {
    return new Promise((resolve) => {
      const req = request(
        this.url,
        { method: 'POST', headers, agent: this.agent, timeout: this.timeoutMs },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () =>
            resolve({ status: res.statusCode ?? 0, detail: Buffer.concat(chunks).toString('utf8') }),
          );
          res.on('error', (err) => resolve({ status: 0, detail: err.message }));
        },
      );
      req.on('timeout', () => req.destroy(new Error(`no answer within ${this.timeoutMs} ms`)));
      req.on('error', (err) => resolve({ status: 0, detail: err.message }));
      req.end(raw);
    });
  }

  /**
   * Opens up to `n` keep-alive connections now (concurrent `GET /healthz`), so a timed run does
   * not pay for connection setup, nor set off a burst of connects when Baton is slow to answer.
   */
  async warm(n: number): Promise<void> {
    const url = new URL('/healthz', this.url);
    await Promise.all(
      Array.from(
        { length: Math.min(n, this.gate.size) },
        () =>
          new Promise<void>((resolve) => {
            const req = request(url, { agent: this.agent, timeout: this.timeoutMs }, (res) => {
              res.resume();
              res.on('end', resolve);
              res.on('error', () => resolve());
            });
            req.on('timeout', () => req.destroy());
            req.on('error', () => resolve());
            req.end();
          }),
      ),
    );
  }

  /** Closes idle connections. */
  close(): void {
    this.agent.destroy();
  }
}
