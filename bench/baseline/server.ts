/**
 * The baseline of `npm run bench`: the seed article's own algorithm, run against the same
 * workload as Baton. Faithful on purpose, flaws included:
 *
 * - the webhook pushes each message to a Redis list and answers 200 (no dedupe by wamid);
 * - workers pop a message, take `SET lock:<user> locked NX EX 5`; when the lock is taken they
 *   re-queue the message at the tail (`queueMessageForRetry`) and move on;
 * - with the lock: read the state from Redis, apply the order flow to this one message (Baton's
 *   own pure `transition`, so the flow is identical, including the article's "compare the
 *   message timestamp" check), write the state "back to the cache and the permanent database
 *   simultaneously" (the article's step 4: Redis and, with `DATABASE_URL`, a PostgreSQL upsert,
 *   side by side), send the replies, then `DEL` the lock in `finally`. No fencing token, no
 *   buffer window, no outbox.
 *
 * It logs every state change with its message ids (the article's advice) and serves the few
 * admin routes the load generator reads, in Baton's shapes, so one verdict judges both.
 *
 * Environment: `PORT`, `HOST`, `REDIS_URL`, `BASELINE_PREFIX` (prepended to every key; the
 * bench gives each run its own and deletes its keys after), `DATABASE_URL` and
 * `BASELINE_PG_SCHEMA` (the durable copy; the bench gives each run its own schema and drops it
 * after; without `DATABASE_URL` the state lives in Redis only), `WHATSAPP_APP_SECRET`,
 * `WHATSAPP_API_BASE_URL`, `ADMIN_TOKEN`, `BASELINE_WORKERS` (8).
 * @module
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { Redis } from 'ioredis';
import pg from 'pg';
import { orderFlow } from '../../src/bots/order.ts';
import type { Flow } from '../../src/flow/define.ts';
import { transition, type ResolvedMessage } from '../../src/flow/transition.ts';
import type { InboundMessage } from '../../src/model/message.ts';
import { toSessionView, type OutboundRecord, type SessionSnapshot } from '../../src/model/session.ts';
import { CloudApiSender, parseCloudApiWebhook, verifyMetaSignature } from '../../src/providers/index.ts';

const env = process.env;
const port = Number(env.PORT ?? 3100);
const host = env.HOST ?? '127.0.0.1';
const secret = env.WHATSAPP_APP_SECRET ?? '';
const adminToken = env.ADMIN_TOKEN ?? '';
const workers = Number(env.BASELINE_WORKERS ?? 8);
const redisUrl = env.REDIS_URL ?? 'redis://127.0.0.1:6379/6';
const flow: Flow = orderFlow;
const sender = new CloudApiSender({ baseUrl: env.WHATSAPP_API_BASE_URL ?? 'http://127.0.0.1:4010' });

// Every key starts with BASELINE_PREFIX, so a run on a shared Redis stays in its own keys.
const P = env.BASELINE_PREFIX ?? '';
const QUEUE = `${P}bl:queue`;
const lockKey = (channel: string, user: string): string => `${P}lock:session:${channel}:${user}`;
const stateKey = (channel: string, user: string): string => `${P}bl:state:${channel}:${user}`;
const logKey = (channel: string, user: string): string => `${P}bl:log:${channel}:${user}`;
const channelKey = (user: string): string => `${P}bl:channel:${user}`;

const redis = new Redis(redisUrl);

// The permanent database of the article's step 4: one row per session, upserted with each state.
const schema = env.BASELINE_PG_SCHEMA ?? 'baseline';
if (!/^[a-z_][a-z0-9_]*$/.test(schema)) throw new Error(`BASELINE_PG_SCHEMA "${schema}" is not a plain name`);
const db =
  env.DATABASE_URL === undefined || env.DATABASE_URL === ''
    ? null
    : new pg.Pool({ connectionString: env.DATABASE_URL, max: workers });
const UPSERT = `INSERT INTO ${schema}.sessions (channel, wa_id, version, state, updated_at)
  VALUES ($1, $2, $3, $4, now())
  ON CONFLICT (channel, wa_id) DO UPDATE
  SET version = EXCLUDED.version, state = EXCLUDED.state, updated_at = EXCLUDED.updated_at`;

async function createTable(): Promise<void> {
  if (db === null) return;
  await db.query(`CREATE SCHEMA IF NOT EXISTS ${schema}`);
  await db.query(`CREATE TABLE IF NOT EXISTS ${schema}.sessions (
    channel text NOT NULL, wa_id text NOT NULL, version integer NOT NULL, state jsonb NOT NULL,
    updated_at timestamptz NOT NULL, PRIMARY KEY (channel, wa_id))`);
}
let busy = 0;
let seq = 0;
let stopping = false;

// --- webhook: push and acknowledge ---------------------------------------------------------

function send(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

async function webhook(raw: Buffer, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const sig = req.headers['x-hub-signature-256'];
  if (secret !== '' && !verifyMetaSignature(raw, typeof sig === 'string' ? sig : undefined, secret)) {
    return send(res, 401, { error: 'bad signature' });
  }
  let messages: InboundMessage[];
  try {
    messages = parseCloudApiWebhook(JSON.parse(raw.toString('utf8'))).messages;
  } catch {
    return send(res, 400, { error: 'bad request' });
  }
  if (messages.length > 0) await redis.rpush(QUEUE, ...messages.map((m) => JSON.stringify(m)));
  send(res, 200, { received: messages.length });
}

// --- the admin routes the load generator reads ---------------------------------------------

async function admin(path: string, res: ServerResponse): Promise<void> {
  if (path === '/admin/api/stats') {
    return send(res, 200, { queue_depth: (await redis.llen(QUEUE)) + busy });
  }
  if (path === '/admin/api/dead-letters') return send(res, 200, { dead_letters: [] });
  const m = /^\/admin\/api\/sessions\/([^/]+)(\/transitions)?$/.exec(path);
  if (m === null) return send(res, 404, { error: 'not found' });
  const user = decodeURIComponent(m[1]!);
  const channel = await redis.get(channelKey(user));
  if (channel === null) return send(res, 404, { error: 'not found' });
  if (m[2] !== undefined) {
    const log = await redis.lrange(logKey(channel, user), 0, -1);
    return send(res, 200, { transitions: log.map((l) => JSON.parse(l) as unknown) });
  }
  const raw = await redis.get(stateKey(channel, user));
  if (raw === null) return send(res, 404, { error: 'not found' });
  send(res, 200, toSessionView(JSON.parse(raw) as SessionSnapshot));
}

const server = createServer((req, res) => {
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => {
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    const work = async (): Promise<void> => {
      if (req.method === 'POST' && path === '/webhooks/whatsapp')
        return webhook(Buffer.concat(chunks), req, res);
      if (req.method === 'GET' && (path === '/healthz' || path === '/readyz'))
        return send(res, 200, { ok: true });
      if (req.method === 'GET' && path.startsWith('/admin/api/')) {
        if (req.headers.authorization !== `Bearer ${adminToken}`)
          return send(res, 401, { error: 'unauthorized' });
        return admin(path, res);
      }
      send(res, 404, { error: 'not found' });
    };
    work().catch((err: unknown) => send(res, 503, { error: String(err) }));
  });
});

// --- workers: the article's processWebhook -------------------------------------------------

async function sendReplies(
  s: SessionSnapshot,
  effects: ReturnType<typeof transition>['effects'],
): Promise<void> {
  let n = 0;
  for (const e of effects) {
    n += 1;
    const rec: OutboundRecord = {
      id: `${s.channel}:${s.user}:${e.version}:${n}`,
      channel: s.channel,
      user: s.user,
      seq: n,
      flow: s.flow,
      step: e.step,
      version: e.version,
      to: s.waId ?? s.user,
      body: e.body,
      callbackData: `baton:${s.flow}:${e.step}:${e.version}${e.inReplyTo !== undefined ? `:${e.inReplyTo}` : ''}`,
      isPrompt: e.isPrompt,
      status: 'pending',
      attempts: 0,
      createdAt: Date.now(),
    };
    await sender.send(rec);
  }
}

async function processMessage(conn: Redis, raw: string, worker: string): Promise<void> {
  const msg = JSON.parse(raw) as InboundMessage;
  const lock = lockKey(msg.channel, msg.user);
  const acquired = await conn.set(lock, 'locked', 'EX', 5, 'NX');
  if (acquired === null) {
    // Re-queue the message if the lock is held by another process.
    await conn.rpush(QUEUE, raw);
    return;
  }
  try {
    const prevRaw = await conn.get(stateKey(msg.channel, msg.user));
    const prev = prevRaw === null ? null : (JSON.parse(prevRaw) as SessionSnapshot);
    const stored: ResolvedMessage = { ...msg, seq: ++seq, storedAt: Date.now() };
    const r = transition(flow, prev, [stored], {
      key: { channel: msg.channel, user: msg.user },
      nowMs: Date.now(),
      worker,
      fence: 0,
      sessionTtlSec: 86_400,
      maxRetries: 3,
    });
    const state = JSON.stringify(r.snapshot);
    // "Write the new state back to the cache and the permanent database simultaneously."
    await Promise.all([
      conn
        .multi()
        .set(stateKey(msg.channel, msg.user), state)
        .set(channelKey(msg.user), msg.channel)
        .rpush(logKey(msg.channel, msg.user), ...r.records.map((t) => JSON.stringify(t)))
        .exec(),
      db?.query(UPSERT, [msg.channel, msg.user, r.snapshot.version, state]),
    ]);
    await sendReplies(r.snapshot, r.effects);
  } catch (err) {
    process.stderr.write(`baseline: processing failed: ${String(err)}\n`);
  } finally {
    // Always release the lock.
    await conn.del(lock);
  }
}

async function workerLoop(i: number): Promise<void> {
  const conn = new Redis(redisUrl);
  const worker = `baseline:${process.pid}:${i}`;
  while (!stopping) {
    const popped = await conn.blpop(QUEUE, 1);
    if (popped === null) continue;
    busy += 1;
    try {
      await processMessage(conn, popped[1], worker);
    } finally {
      busy -= 1;
    }
  }
  conn.disconnect();
}

await createTable();
server.listen(port, host, () => {
  process.stdout.write(`baseline listening on http://${host}:${port} with ${workers} workers\n`);
});
const loops = Array.from({ length: workers }, (_, i) => workerLoop(i));
const stop = (): void => {
  stopping = true;
  server.close();
  void Promise.all(loops).then(async () => {
    redis.disconnect();
    await db?.end();
    process.exit(0);
  });
};
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
