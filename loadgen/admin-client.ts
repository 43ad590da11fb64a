/**
 * What the load generator asks Baton's admin API: whether it answers, how much it still holds,
 * and what it recorded of each user (session, transitions, outbound claims, storage times), for
 * the verdict. One client per run: the target's address, its admin token and how long a read is
 * tried again while the target restarts.
 * @module
 */
import { performance } from 'node:perf_hooks';
import type { Channel } from './payloads.ts';
import type { UserTrace } from './scenario.ts';
import type { ReplySink } from './sink.ts';
import type { SessionEvidence, TransitionEvidence, UserEvidence } from './verdict.ts';

/** The target cannot be load-tested as asked (unreachable, admin token refused...). */
export class LoadError extends Error {
  override readonly name = 'LoadError';
}

/** The admin API gave no answer at `url`, retries included (the target is down). */
export class AdminUnreachableError extends Error {
  override readonly name = 'AdminUnreachableError';
  constructor(
    readonly url: string,
    cause: unknown,
  ) {
    super(`${url}: ${networkReason(cause)}`, { cause });
  }
}

/** `fetch failed` says nothing: its cause does (`connect ECONNREFUSED 127.0.0.1:3000`). */
function networkReason(err: unknown): string {
  const e = err as { message?: unknown; cause?: { message?: unknown } } | null;
  const inner = e?.cause?.message;
  if (typeof inner === 'string' && inner !== '') return inner;
  return typeof e?.message === 'string' ? e.message : String(err);
}

async function getJsonOnce(url: string, token: string): Promise<{ status: number; json: unknown }> {
  const res = await fetch(url, { headers: { authorization: `Bearer ${token}` } });
  const text = await res.text();
  let json: unknown = undefined;
  try {
    json = JSON.parse(text);
  } catch {
    json = text;
  }
  return { status: res.status, json };
}

/**
 * One admin API read. A network error or a 503 (the target restarting, a store away) is tried
 * again for up to `retryMs` (30 s), as the webhooks are: a run that kills and restarts Baton
 * still gets its verdict.
 * @throws AdminUnreachableError when no answer came in that time.
 */
export async function getJson(
  url: string,
  token: string,
  retryMs = 30_000,
): Promise<{ status: number; json: unknown }> {
  const deadline = performance.now() + retryMs;
  for (let delay = 100; ; delay = Math.min(delay * 2, 2000)) {
    try {
      const answer = await getJsonOnce(url, token);
      if (answer.status !== 503 || performance.now() + delay > deadline) return answer;
    } catch (err) {
      if (performance.now() + delay > deadline) throw new AdminUnreachableError(url, err);
    }
    await new Promise((r) => setTimeout(r, delay));
  }
}

type OutboundItem = {
  callback_data: unknown;
  claims: unknown;
  kind: unknown;
  step: unknown;
  status: unknown;
  last_error: unknown;
};
type MessageItem = { direction: unknown; id: unknown; at: unknown; read_late_ms: unknown };

/** Baton's admin API at `base` (no trailing slash), read with `token`. */
export class AdminClient {
  constructor(
    readonly base: string,
    private readonly token: string,
    /** How long each read is tried again while the target does not answer (see getJson). */
    private readonly retryMs?: number,
  ) {}

  private get(path: string): Promise<{ status: number; json: unknown }> {
    return getJson(`${this.base}${path}`, this.token, this.retryMs);
  }

  /** Checks that Baton answers and accepts the admin token, before any load is sent. */
  async preflight(): Promise<void> {
    try {
      const health = await fetch(`${this.base}/healthz`);
      if (health.status !== 200) throw new LoadError(`${this.base}/healthz answered ${health.status}`);
    } catch (err) {
      if (err instanceof LoadError) throw err;
      throw new LoadError(`Baton does not answer at ${this.base} (${(err as Error).message})`);
    }
    const stats = await this.get('/admin/api/stats');
    if (stats.status === 401)
      throw new LoadError('the admin API refused the admin token (check --admin-token / ADMIN_TOKEN)');
    if (stats.status !== 200) throw new LoadError(`${this.base}/admin/api/stats answered ${stats.status}`);
  }

  /**
   * Baton's `queue_depth` (null if its stats do not say).
   * @throws AdminUnreachableError when the admin API does not answer.
   */
  async backlog(): Promise<number | null> {
    const r = await this.get('/admin/api/stats');
    const depth = (r.json as { queue_depth?: unknown } | null)?.queue_depth;
    return r.status === 200 && typeof depth === 'number' ? depth : null;
  }

  /** What the dead letters' records name (`ref`), the first 500. */
  async deadLetterRefs(): Promise<Set<string>> {
    const dl = await this.get('/admin/api/dead-letters?limit=500');
    return new Set(
      dl.status === 200
        ? ((dl.json as { dead_letters?: { ref?: unknown }[] }).dead_letters ?? []).map((d) => String(d.ref))
        : [],
    );
  }

  /** The user's session and transitions as Baton recorded them, beside the replies the sink got. */
  async evidence(channel: Channel, trace: UserTrace, sink: ReplySink): Promise<UserEvidence> {
    const q = `?channel=${encodeURIComponent(channel.phoneNumberId)}`;
    const path = `/admin/api/sessions/${encodeURIComponent(trace.waId)}`;
    const [s, t] = await Promise.all([this.get(`${path}${q}`), this.get(`${path}/transitions${q}`)]);
    if (s.status !== 200 && s.status !== 404) throw new LoadError(`${this.base}${path} answered ${s.status}`);
    const transitions =
      t.status === 200 ? ((t.json as { transitions?: TransitionEvidence[] }).transitions ?? []) : [];
    return {
      trace,
      replies: sink.callsTo(trace.waId),
      session: s.status === 200 ? (s.json as SessionEvidence) : null,
      transitions,
    };
  }

  /** Baton's send attempts that may have reached the user, by callback data (its outbound records' `claims`). */
  async claims(channel: Channel, waId: string): Promise<Map<string, number>> {
    const records = await this.sessionList<OutboundItem>(channel, waId, 'outbound');
    const claims = new Map<string, number>();
    for (const o of records) {
      if (typeof o.callback_data !== 'string') continue;
      // A Baton too old to say: every repeat may be a crash's, as before.
      claims.set(o.callback_data, typeof o.claims === 'number' ? o.claims : 2);
    }
    return claims;
  }

  /**
   * The user's replies Baton gave up on (outbound records `failed`, each in the dead letters), by
   * the step that sent them: why, in Baton's words.
   */
  async failedReplies(channel: Channel, waId: string): Promise<Map<string, string>> {
    const records = await this.sessionList<OutboundItem>(channel, waId, 'outbound');
    const failed = new Map<string, string>();
    for (const o of records) {
      if (o.kind !== 'reply' || o.status !== 'failed' || typeof o.step !== 'string') continue;
      failed.set(o.step, typeof o.last_error === 'string' ? o.last_error : 'no reason recorded');
    }
    return failed;
  }

  /**
   * When each of the user's messages may have reached Baton (its admin API's conversation), by
   * message id: its storage time, less how late Baton read it (`read_late_ms`), as the buffer
   * window counts it.
   */
  async storedTimes(channel: Channel, waId: string): Promise<Map<string, number>> {
    const items = await this.sessionList<MessageItem>(channel, waId, 'messages');
    const times = new Map<string, number>();
    for (const m of items) {
      if (m.direction === 'in' && typeof m.id === 'string' && typeof m.at === 'string') {
        const late = typeof m.read_late_ms === 'number' ? m.read_late_ms : 0;
        times.set(m.id, Date.parse(m.at) - late);
      }
    }
    return times;
  }

  /** A list the admin API keeps under one of the user's sessions (`outbound`, `messages`), `[]` if none. */
  private async sessionList<T>(
    channel: Channel,
    waId: string,
    list: 'outbound' | 'messages',
  ): Promise<Partial<T>[]> {
    const q = `?channel=${encodeURIComponent(channel.phoneNumberId)}${list === 'messages' ? '&limit=500' : ''}`;
    const r = await this.get(`/admin/api/sessions/${encodeURIComponent(waId)}/${list}${q}`);
    return r.status === 200 ? ((r.json as Record<string, Partial<T>[] | undefined>)[list] ?? []) : [];
  }
}

/** Messages Baton holds pending (its admin API's `queue_depth`), or null if it does not say or answer. */
export async function queueDepth(base: string, token: string): Promise<number | null> {
  try {
    return await new AdminClient(base, token).backlog();
  } catch {
    return null;
  }
}
