/**
 * Retention (BATON_RETENTION, BATON_MESSAGE_RETENTION) in both backends, with an injected
 * clock: after the retention, the periodic purge deletes transition records, outbound records,
 * dead letters and message texts; sessions stay and go on (once idle past the TTL as well, the
 * engine expires them). With a message retention shorter than the dedupe window, embedded mode redacts
 * the texts but keeps the ids, so a replay is still a duplicate.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { Redis } from 'ioredis';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { createBaton, type Baton } from '../../src/app.ts';
import type { DistributedBackend } from '../../src/backends/distributed/index.ts';
import type { EmbeddedBackend } from '../../src/backends/embedded/index.ts';
import {
  EXPIRE_DOSE,
  EXPIRE_PER_PURGE,
  emptyPurgeReport,
  type PurgeReport,
} from '../../src/backends/retention.ts';
import { loadConfig } from '../../src/config/index.ts';
import type { Flow } from '../../src/flow/define.ts';
import type { DeadLetter, SessionView, TransitionRecord } from '../../src/model/session.ts';
import { signMetaBody } from '../../src/providers/index.ts';
import { orderStatusFlow } from '../../examples/order-status/flow.ts';
import { startFakeGraph, type FakeGraph, type RecordedCall } from '../support/fake-graph.ts';
import { shopOrder, startFakeShop, type FakeShop } from '../support/fake-shop.ts';
import { ADMIN_TOKEN, APP_SECRET } from '../support/harness.ts';
import { button, PHONE_ID, text, webhook, type Msg } from '../support/payloads.ts';
import {
  DATABASE_URL,
  distributedServicesUp,
  dropIsolation,
  pgQuery,
  REDIS_URL,
  uniqueName,
} from '../support/services.ts';

const up = await distributedServicesUp('distributed retention');
const HOUR = 3600_000;

interface Rig {
  baton: Baton;
  graph: FakeGraph;
  clock: { offsetMs: number };
  post(m: Msg): Promise<number>;
  /** Posts `ms` in one webhook (Meta sends up to 1,000 updates in one POST). */
  postAll(ms: Msg[]): Promise<number>;
  session(u: string): Promise<SessionView>;
  transitions(u: string): Promise<TransitionRecord[]>;
  settled(u: string, version: number): Promise<SessionView>;
  close(): Promise<void>;
}

async function rig(
  env: Record<string, string>,
  cleanup: () => Promise<void> = async () => undefined,
  flows?: readonly Flow[],
): Promise<Rig> {
  const graph = await startFakeGraph();
  const clock = { offsetMs: 0 };
  const baton = await createBaton(
    loadConfig({
      PORT: '0',
      HOST: '127.0.0.1',
      WHATSAPP_APP_SECRET: APP_SECRET,
      WHATSAPP_ACCESS_TOKEN: 't',
      WHATSAPP_API_BASE_URL: graph.url,
      ADMIN_TOKEN,
      BATON_BUFFER_MS: '20',
      ...env,
    }),
    {
      logger: pino({ level: 'silent' }),
      now: () => Date.now() + clock.offsetMs,
      engine: { sendBackoffMs: 10 },
      ...(flows ? { flows } : {}),
    },
  );
  const url = (await baton.start())!;
  const admin = async <T>(path: string): Promise<T> => {
    const r = await fetch(`${url}/admin/api${path}`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
    if (r.status !== 200) throw new Error(`${path}: ${r.status}`);
    return (await r.json()) as T;
  };
  const r: Rig = {
    baton,
    graph,
    clock,
    post: (m) => r.postAll([m]),
    async postAll(ms) {
      const raw = Buffer.from(JSON.stringify(webhook(ms)));
      const res = await fetch(`${url}/webhooks/whatsapp`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-hub-signature-256': signMetaBody(raw, APP_SECRET) },
        body: new Uint8Array(raw),
      });
      return res.status;
    },
    session: (u) => admin<SessionView>(`/sessions/${u}?channel=${PHONE_ID}`),
    async transitions(u) {
      return (
        await admin<{ transitions: TransitionRecord[] }>(`/sessions/${u}/transitions?channel=${PHONE_ID}`)
      ).transitions;
    },
    async settled(u, version) {
      const deadline = Date.now() + 10_000;
      for (;;) {
        const s = await r.session(u).catch(() => null);
        if (s && s.metadata.version >= version && (await baton.backend.stats()).queueDepth === 0) return s;
        if (Date.now() > deadline) throw new Error(`${u} never reached version ${version}`);
        await new Promise((res) => setTimeout(res, 20));
      }
    },
    async close() {
      await baton.stop().catch(() => undefined);
      await graph.close();
      await cleanup();
    },
  };
  return r;
}

/** Polls `check` until it holds, for 10 s at most; then fails saying `what`. */
async function until(check: () => Promise<boolean>, what: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(what);
    await new Promise((res) => setTimeout(res, 20));
  }
}

/** The `n` of a `SELECT count(*) AS n` in `schema`. */
async function rows(schema: string, sql: string): Promise<number> {
  return Number((await pgQuery<{ n: string }>(schema, sql))[0]!.n);
}

/** Waits for at least `n` rows in each of `tables`: the journal's copies reached PostgreSQL. */
function copied(schema: string, tables: readonly string[], n: number): Promise<void> {
  return until(
    async () =>
      (await Promise.all(tables.map((t) => rows(schema, `SELECT count(*) AS n FROM ${t}`)))).every(
        (c) => c >= n,
      ),
    'not copied to PostgreSQL',
  );
}

/** A distributed Baton on its own Redis prefix and PostgreSQL schema, dropped when it closes. */
async function distributedRig(
  env: Record<string, string>,
  flows?: readonly Flow[],
): Promise<{ r: Rig; schema: string; prefix: string }> {
  const prefix = uniqueName('ret');
  const schema = uniqueName('ret');
  const r = (current = await rig(
    { REDIS_URL, DATABASE_URL, BATON_REDIS_PREFIX: prefix, BATON_PG_SCHEMA: schema, ...env },
    () => dropIsolation(prefix, schema),
    flows,
  ));
  return { r, schema, prefix };
}

/** A short conversation: "hi" then a name, two prompts sent. */
async function converse(r: Rig, u: string): Promise<Msg[]> {
  const t = Math.floor(Date.now() / 1000);
  const msgs = [text(u, 'hi', t), text(u, 'Ada Lovelace', t + 1)];
  expect(await r.post(msgs[0]!)).toBe(200);
  await r.settled(u, 1);
  expect(await r.post(msgs[1]!)).toBe(200);
  await r.settled(u, 2);
  // Both prompts sent, and recorded as sent.
  const deadline = Date.now() + 10_000;
  for (;;) {
    const s = await r.session(u);
    const out = await r.baton.backend.outbound({ channel: s.channel, user: u });
    if (out.length === 2 && out.every((o) => o.status === 'sent')) break;
    if (Date.now() > deadline) throw new Error(`prompts not sent: ${JSON.stringify(out)}`);
    await new Promise((res) => setTimeout(res, 20));
  }
  return msgs;
}

/** A dead letter holding a reply's text, as a refused send leaves it. */
function deadLetter(u: string): DeadLetter {
  return {
    id: `out:test-${u}:1:0`,
    kind: 'outbound',
    channel: PHONE_ID,
    user: u,
    ref: `test-${u}`,
    reason: 'Graph refused it (400)',
    payload: { text: { body: 'Thanks, Ada Lovelace. Which product would you like?' } },
    createdAt: Date.now(),
  };
}

/**
 * An old button after the purge (outside tester's F1): a user at the product step for the
 * second time taps a product button of the first visit's prompt. Its record outlives the
 * message retention (only its text goes), so the tap is still stale, as it was before the
 * purge, instead of choosing a product on the strength of an answered question.
 */
async function oldButtonAfterPurge(r: Rig, u: string, purge: () => Promise<unknown>): Promise<void> {
  const t = Math.floor(Date.now() / 1000);
  const key = { channel: PHONE_ID, user: u };
  const firstPrompt = async (): Promise<string | undefined> =>
    (await r.baton.backend.outbound(key)).find((o) => o.step === 'choose_product' && o.version === 2)
      ?.providerMessageId;
  expect(await r.post(text(u, 'hi', t))).toBe(200);
  await r.settled(u, 1);
  expect(await r.post(text(u, 'Ada Lovelace', t + 1))).toBe(200);
  await r.settled(u, 2);
  await until(async () => (await firstPrompt()) !== undefined, 'the product prompt was not sent');
  const old = await firstPrompt();
  expect(await r.post(text(u, 'reset', t + 2))).toBe(200);
  await r.settled(u, 3);
  expect(await r.post(text(u, 'Bea Lovelace', t + 3))).toBe(200);
  await r.settled(u, 4);
  r.clock.offsetMs = HOUR;
  await purge();
  expect(await r.post(button(u, 'sku_550e', 'Trail Shoe', t + 4, old))).toBe(200);
  await until(async () => (await r.transitions(u)).length >= 5, 'the tap was not recorded');
  expect((await r.transitions(u)).at(-1)).toMatchObject({ kind: 'stale_input', to_step: 'choose_product' });
  const s = await r.session(u);
  expect(s.metadata.version).toBe(4);
  expect(s.data).toEqual({ customer_name: 'Bea Lovelace' });
}

/**
 * A reply Graph refused for good, then the purge past the message retention: its record is
 * deleted, not redacted (nobody saw it; a replay of its dead letter would send the redaction's
 * text), while the sent ones are redacted and kept.
 */
async function failedReplyPurged(r: Rig, u: string, purge: () => Promise<unknown>): Promise<unknown> {
  await converse(r, u);
  r.graph.failNext(1, { status: 400, graphCode: 131047 });
  expect(await r.post(text(u, 'not a button', Math.floor(Date.now() / 1000) + 2))).toBe(200);
  const key = { channel: PHONE_ID, user: u };
  await until(
    async () => (await r.baton.backend.outbound(key)).some((o) => o.status === 'failed'),
    'the reply did not fail',
  );
  r.clock.offsetMs = HOUR;
  return purge();
}

/** The retention of a session's data (outside test QA69-F1): 1 h of texts, sessions expire after 2 h. */
const DATA_RETENTION = {
  BATON_RETENTION: '1d',
  BATON_MESSAGE_RETENTION: '1h',
  BATON_SESSION_TTL: '2h',
  BATON_DEDUPE_TTL: '3h',
};

/**
 * A session past its expiry and the message retention: kept while it may still be used (past the
 * message retention, not yet expired), then expired by the engine, recorded (no step, no
 * data), the row kept. The user's next message starts a new conversation, also one stamped
 * before the session expired and delivered late (outside test QA71-R1: it continued the cleared
 * session, its prompt quoting data no longer there). `stored` reads the store's copy of the data.
 */
async function sessionDataCleared(
  r: Rig,
  u: string,
  purge: () => Promise<PurgeReport>,
  stored: () => Promise<unknown>,
): Promise<void> {
  await converse(r, u);
  r.clock.offsetMs = 1.5 * HOUR;
  expect((await purge()).sessions).toBe(0);
  expect((await r.session(u)).data).toEqual({ customer_name: 'Ada Lovelace' });
  r.clock.offsetMs = 3 * HOUR;
  const sent = r.graph.requests.length;
  expect((await purge()).sessions).toBe(1);
  // Expired by the engine, as a late user's message would expire it: a new version, recorded
  // (outside test QA72-F2: cleared in place, the session changed with no version and no record).
  const s = await r.settled(u, 3);
  expect(s).toMatchObject({ current_step: null, data: {} });
  expect(s.metadata.needs_agent).toBe(false);
  expect((await r.transitions(u)).slice(-2)).toMatchObject([
    { version: 3, kind: 'expired', from_step: 'choose_product', to_step: null },
    { version: 3, kind: 'ignored' },
  ]);
  await until(async () => JSON.stringify(await stored()) === '{}', 'the stored data was not cleared');
  expect(r.graph.requests.length).toBe(sent); // housekeeping says nothing to the user
  expect((await purge()).sessions).toBe(0); // nothing left to expire
  // A redelivery of a product choice sent in time, only now delivered: a new conversation's start.
  // (Stamped 1 h after the last message: inside BATON_SESSION_TTL, and inside the dedupe window.)
  expect(await r.post(text(u, '2', Math.floor(Date.now() / 1000) + 3600))).toBe(200);
  const after = await r.settled(u, s.metadata.version + 1);
  expect(after).toMatchObject({ current_step: 'ask_name', data: {} });
}

/** A session as the store keeps it: its version and data. */
interface Stored {
  readonly version: number;
  readonly data: unknown;
}

/**
 * Sessions still at work are not cleared, however long since their last write (outside test
 * QA71-R2, R3): one awaiting an effect (the shop holds the lookup), one whose reply is still
 * being sent (Graph holds the answer). Both past their expiry and the message retention; the
 * purge clears neither, and each goes on from its data. (An effect under way is an outbound record
 * being sent, so the unsent-reply rule covers it too; `awaiting` keeps the session until its
 * result is applied.) `stored` reads the store's copy of a user's session. The rig serves the
 * order-status flow against `shop`.
 */
async function workInProgressKept(
  r: Rig,
  shop: FakeShop,
  users: { awaiting: string; sending: string },
  purge: () => Promise<PurgeReport>,
  stored: (u: string) => Promise<Stored | undefined>,
): Promise<void> {
  const { awaiting, sending } = users;
  const toSending = (c: RecordedCall): boolean => c.body.to?.replace(/^\+/, '') === sending;
  const t = Math.floor(Date.now() / 1000);
  shop.orders.set('ORD-12345', shopOrder('ORD-12345'));
  const release = shop.hold('GET /orders/ORD-12345');
  expect(await r.post(text(awaiting, 'ORD-12345', t))).toBe(200);
  await shop.waitForCalls('GET /orders/ORD-12345', 1);
  expect(await r.post(text(sending, 'hello', t))).toBe(200);
  await r.graph.waitFor(toSending);
  // The retry's prompt: Graph holds its answer for 4 s, then refuses it; the engine sends it again.
  r.graph.failNext(1, { status: 503, delayMs: 4000, to: sending });
  expect(await r.post(text(sending, 'no idea', t + 1))).toBe(200);
  await until(
    async () =>
      (await r.baton.backend.outbound({ channel: PHONE_ID, user: sending })).some(
        (o) => o.version === 2 && (o.status === 'pending' || o.status === 'sending'),
      ),
    'the retry prompt was not committed',
  );
  // The store holds what the sessions are at (a distributed store copies them from Redis).
  for (const u of [awaiting, sending]) {
    const version = (await r.session(u)).metadata.version;
    await until(async () => (await stored(u))?.version === version, `${u} not stored`);
  }
  r.clock.offsetMs = 3 * HOUR;
  expect((await purge()).sessions).toBe(0);
  expect((await stored(awaiting))?.data).toEqual({ lang: 'en', order: 'ORD-12345' });
  expect((await stored(sending))?.data).toEqual({ lang: 'en' });
  expect(await r.session(awaiting)).toMatchObject({ current_step: 'looking_up' });
  expect(await r.session(sending)).toMatchObject({ current_step: 'ask_order' });
  // The lookup answers: its result lands on the data the purge left alone.
  release();
  await until(async () => (await r.session(awaiting)).current_step === 'show_status', 'no lookup result');
  expect((await r.session(awaiting)).data).toMatchObject({ lang: 'en', order: 'ORD-12345' });
  await until(async () => r.graph.sent.filter(toSending).length === 2, 'the retry was not sent');
}

/** More sessions than one purge hands over (`EXPIRE_PER_PURGE`), the rest to the next purge. */
const MANY = EXPIRE_PER_PURGE + 20;

/**
 * A purge hands over at most {@link EXPIRE_PER_PURGE} expiry events (outside test QA74-F3: 1,845 at
 * once fired a queue-depth alert with no user writing); the next purge resumes after the last one
 * handed over, and each session expires once. `MANY` users each say "hi" in one webhook and get
 * the name prompt; then the clock moves past their expiry. `stored` counts the sessions the
 * store's purge sees.
 */
async function expiryCapped(
  r: Rig,
  purge: () => Promise<PurgeReport>,
  stored: () => Promise<number>,
): Promise<void> {
  const t = Math.floor(Date.now() / 1000);
  const users = Array.from({ length: MANY }, (_, i) => `1555888${String(i).padStart(4, '0')}`);
  expect(await r.postAll(users.map((u) => text(u, 'hi', t)))).toBe(200);
  await until(async () => r.graph.sent.length >= MANY, 'the name prompts were not all sent');
  for (const u of users) {
    await until(
      async () =>
        (await r.baton.backend.outbound({ channel: PHONE_ID, user: u })).every((o) => o.status === 'sent'),
      `${u}: its prompt not recorded as sent`,
    );
  }
  await until(async () => (await stored()) === MANY, 'the sessions were not all stored');
  r.clock.offsetMs = 3 * HOUR;
  const drained = (): Promise<void> =>
    until(async () => (await r.baton.backend.stats()).queueDepth === 0, 'the expiry events were not applied');
  // Handed a dose at a time, each once the workers took the one before: the purge alone keeps
  // the queue depth within a dose (outside test QA90-F3: 500 at once paged a threshold of 100).
  let deepest = 0;
  let watching = true;
  const watch = (async () => {
    while (watching) {
      deepest = Math.max(deepest, (await r.baton.backend.stats()).queueDepth);
      await new Promise((res) => setTimeout(res, 5));
    }
  })();
  expect((await purge()).sessions).toBe(EXPIRE_PER_PURGE);
  watching = false;
  await watch;
  expect(deepest).toBeGreaterThan(0);
  expect(deepest).toBeLessThanOrEqual(EXPIRE_DOSE);
  await drained();
  expect((await purge()).sessions).toBe(MANY - EXPIRE_PER_PURGE);
  await drained();
  expect((await purge()).sessions).toBe(0);
  const sent = r.graph.sent.length;
  for (const u of users) {
    const kinds = (await r.transitions(u)).map((x) => x.kind);
    expect(kinds, u).toEqual(['advance', 'expired', 'ignored']);
    expect((await r.session(u)).metadata.version, u).toBe(2);
  }
  expect(r.graph.sent.length).toBe(sent);
}

let current: Rig | undefined;
let currentShop: FakeShop | undefined;
const dirs: string[] = [];
afterEach(async () => {
  await current?.close();
  current = undefined;
  await currentShop?.close();
  currentShop = undefined;
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe('retention, embedded', () => {
  const dataDir = (): string => {
    const d = mkdtempSync(join(tmpdir(), 'baton-ret-'));
    dirs.push(d);
    return d;
  };

  it('purges transitions, outbound records and message texts after the retention; the session goes on', async () => {
    const dir = dataDir();
    const r = (current = await rig({
      BATON_DATA_DIR: dir,
      BATON_RETENTION: '1h',
      BATON_MESSAGE_RETENTION: '1h',
      BATON_DEDUPE_TTL: '30m',
    }));
    const u = '15557770001';
    await converse(r, u);
    const backend = r.baton.backend as EmbeddedBackend;
    await backend.deadLetter(deadLetter(u));
    expect((await backend.stats()).deadLetters).toBe(1);
    // Inside the retention nothing goes.
    r.clock.offsetMs = 0.5 * HOUR;
    expect(await backend.purge()).toEqual({
      transitions: 0,
      outbound: 0,
      inbound: 0,
      redacted: 0,
      deadLetters: 0,
      sessions: 0,
    });
    expect(await r.transitions(u)).toHaveLength(2);

    r.clock.offsetMs = 2 * HOUR;
    expect(await backend.purge()).toEqual({
      transitions: 2,
      outbound: 2,
      inbound: 2,
      redacted: 0,
      deadLetters: 1,
      sessions: 0,
    });
    expect(await r.transitions(u)).toEqual([]);
    // The dead letter held the user's text: it went too, and the count with it.
    expect(await backend.listDeadLetters(10)).toEqual([]);
    expect((await backend.stats()).deadLetters).toBe(0);
    const db = new Database(join(dir, 'baton.sqlite'), { readonly: true });
    try {
      for (const table of ['transitions', 'outbound', 'inbound'])
        expect((db.prepare(`SELECT count(*) AS n FROM ${table}`).get() as { n: number }).n, table).toBe(0);
    } finally {
      db.close();
    }
    const s = await r.session(u);
    expect(s.metadata.version).toBe(2);
    expect(s.data).toEqual({ customer_name: 'Ada Lovelace' });
    // The conversation goes on from where it was.
    expect(await r.post(text(u, 'bogus', Math.floor(Date.now() / 1000) + 7200))).toBe(200);
    expect((await r.settled(u, 3)).current_step).toBe('choose_product');
  });

  it('a message retention shorter than the dedupe window redacts texts, keeps ids: a replay stays a duplicate', async () => {
    const dir = dataDir();
    const r = (current = await rig({
      BATON_DATA_DIR: dir,
      BATON_RETENTION: '1d',
      BATON_MESSAGE_RETENTION: '30m',
      BATON_DEDUPE_TTL: '2h',
    }));
    const u = '15557770002';
    const [, name] = await converse(r, u);
    r.clock.offsetMs = HOUR;
    const report = await (r.baton.backend as EmbeddedBackend).purge();
    // Outbound records hold the texts sent: those go with the message retention, the records
    // (which tell an old button's prompt from the current one) with the retention.
    expect(report).toEqual({ ...emptyPurgeReport(), redacted: 4 });
    expect(await r.transitions(u)).toHaveLength(2);
    const db = new Database(join(dir, 'baton.sqlite'), { readonly: true });
    try {
      const bodies = db.prepare('SELECT body FROM inbound').all() as Array<{ body: string }>;
      expect(bodies).toHaveLength(2);
      for (const { body } of bodies) {
        expect(body).not.toContain('Ada Lovelace');
        expect(body).not.toContain('"hi"');
      }
      const records = db.prepare('SELECT record FROM outbound').all() as Array<{ record: string }>;
      expect(records).toHaveLength(2);
      for (const { record } of records) expect(record).not.toContain('Ada Lovelace');
    } finally {
      db.close();
    }
    expect(await r.post(name!)).toBe(200);
    await new Promise((res) => setTimeout(res, 200));
    expect((await r.session(u)).metadata.version).toBe(2);
    expect(await r.transitions(u)).toHaveLength(2);
  });
});

describe('retention, embedded: old buttons', () => {
  it('an old button stays stale after the message retention purged its prompt’s text', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'baton-ret-'));
    dirs.push(dir);
    const r = (current = await rig({
      BATON_DATA_DIR: dir,
      BATON_RETENTION: '1d',
      BATON_MESSAGE_RETENTION: '30m',
    }));
    await oldButtonAfterPurge(r, '15557770011', () => (r.baton.backend as EmbeddedBackend).purge());
  });
});

describe('retention, embedded: failed replies', () => {
  it('a reply that failed is deleted after the message retention, the sent ones redacted', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'baton-ret-'));
    dirs.push(dir);
    const r = (current = await rig({
      BATON_DATA_DIR: dir,
      BATON_RETENTION: '1d',
      BATON_MESSAGE_RETENTION: '30m',
    }));
    const report = await failedReplyPurged(r, '15557770014', () =>
      (r.baton.backend as EmbeddedBackend).purge(),
    );
    // 3 inbound texts and 2 sent replies redacted; the failed reply and its dead letter deleted.
    expect(report).toEqual({
      transitions: 0,
      outbound: 1,
      inbound: 0,
      redacted: 5,
      deadLetters: 1,
      sessions: 0,
    });
    const db = new Database(join(dir, 'baton.sqlite'), { readonly: true });
    try {
      expect(db.prepare('SELECT status FROM outbound ORDER BY rowid').all()).toEqual([
        { status: 'sent' },
        { status: 'sent' },
      ]);
    } finally {
      db.close();
    }
  });
});

describe('retention, embedded: session data', () => {
  it("clears an expired session's data past the message retention, keeps the row (outside test QA69-F1)", async () => {
    const dir = mkdtempSync(join(tmpdir(), 'baton-ret-'));
    dirs.push(dir);
    const r = (current = await rig({ BATON_DATA_DIR: dir, ...DATA_RETENTION }));
    const u = '15557770016';
    const backend = r.baton.backend as EmbeddedBackend;
    await sessionDataCleared(
      r,
      u,
      () => backend.purge(),
      async () => {
        const db = new Database(join(dir, 'baton.sqlite'), { readonly: true });
        try {
          const row = db.prepare('SELECT snapshot FROM sessions WHERE user = ?').get(u) as {
            snapshot: string;
          };
          return (JSON.parse(row.snapshot) as { data: unknown }).data;
        } finally {
          db.close();
        }
      },
    );
  });
});

describe('retention, embedded: many sessions due at once', () => {
  it(`hands over ${EXPIRE_PER_PURGE} expiries per purge, the rest to the next, each session once (outside test QA74-F3)`, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'baton-ret-'));
    dirs.push(dir);
    const r = (current = await rig({ BATON_DATA_DIR: dir, ...DATA_RETENTION }));
    const backend = r.baton.backend as EmbeddedBackend;
    await expiryCapped(
      r,
      () => backend.purge(),
      async () => (await backend.countSessions()).reduce((n, c) => n + c.sessions, 0),
    );
  }, 60_000);
});

describe('retention, embedded: sessions at work', () => {
  it('keeps a session awaiting an effect, and one with a reply being sent, past expiry and retention (outside test QA71-R2)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'baton-ret-'));
    dirs.push(dir);
    const shop = (currentShop = await startFakeShop());
    const flow = orderStatusFlow({ apiUrl: shop.url, backoffMs: 20 });
    const r = (current = await rig({ BATON_DATA_DIR: dir, ...DATA_RETENTION }, undefined, [flow]));
    const backend = r.baton.backend as EmbeddedBackend;
    await workInProgressKept(
      r,
      shop,
      { awaiting: '15557770018', sending: '15557770019' },
      () => backend.purge(),
      async (u) => {
        const db = new Database(join(dir, 'baton.sqlite'), { readonly: true });
        try {
          const row = db.prepare('SELECT version, snapshot FROM sessions WHERE user = ?').get(u) as
            { version: number; snapshot: string } | undefined;
          return row && { version: row.version, data: (JSON.parse(row.snapshot) as { data: unknown }).data };
        } finally {
          db.close();
        }
      },
    );
  });
});

describe.skipIf(!up)('retention, distributed', () => {
  it('purges transitions, outbound records and inbound messages from PostgreSQL; the session goes on', async () => {
    const { r, schema } = await distributedRig({
      BATON_RETENTION: '1h',
      BATON_MESSAGE_RETENTION: '1h',
      BATON_DEDUPE_TTL: '30m',
    });
    const u = '15557770003';
    await converse(r, u);
    const count = (table: string): Promise<number> => rows(schema, `SELECT count(*) AS n FROM ${table}`);
    await copied(schema, ['outbound', 'transitions', 'inbound'], 2);
    const backend = r.baton.backend as DistributedBackend;
    await backend.deadLetter(deadLetter(u));
    expect((await backend.stats()).deadLetters).toBe(1);
    r.clock.offsetMs = 0.5 * HOUR;
    expect(await backend.purge()).toEqual({
      transitions: 0,
      outbound: 0,
      inbound: 0,
      redacted: 0,
      deadLetters: 0,
      sessions: 0,
    });
    r.clock.offsetMs = 2 * HOUR;
    expect(await backend.purge()).toEqual({
      transitions: 2,
      outbound: 2,
      inbound: 2,
      redacted: 0,
      deadLetters: 1,
      sessions: 0,
    });
    for (const table of ['transitions', 'outbound', 'inbound', 'dead_letters'])
      expect(await count(table), table).toBe(0);
    expect((await backend.stats()).deadLetters).toBe(0);
    expect(await count('sessions')).toBe(1);
    expect((await r.session(u)).metadata.version).toBe(2);
    expect(await r.post(text(u, 'bogus', Math.floor(Date.now() / 1000) + 7200))).toBe(200);
    expect((await r.settled(u, 3)).current_step).toBe('choose_product');
  });
  it('redacts texts inside the dedupe window and keeps the rows: a redelivery after Redis lost its markers stays a duplicate', async () => {
    const { r, schema, prefix } = await distributedRig({
      BATON_RETENTION: '1d',
      BATON_MESSAGE_RETENTION: '30m',
      BATON_DEDUPE_TTL: '2h',
    });
    const u = '15557770012';
    const [, name] = await converse(r, u);
    await copied(schema, ['outbound', 'inbound'], 2);
    r.clock.offsetMs = HOUR;
    const backend = r.baton.backend as DistributedBackend;
    expect(await backend.purge()).toEqual({ ...emptyPurgeReport(), redacted: 4 });
    const rows = await pgQuery<{ m: string }>(
      schema,
      `SELECT message::text AS m FROM inbound UNION ALL SELECT record::text FROM outbound`,
    );
    expect(rows).toHaveLength(4);
    for (const { m } of rows) expect(m).not.toContain('Ada Lovelace');
    // Redis loses the user's dedupe markers (a restart without AOF); Meta redelivers the name.
    const redis = new Redis(REDIS_URL);
    try {
      const seen = await redis.keys(`${prefix}:*${u}*:seen:*`);
      expect(seen.length).toBeGreaterThan(0);
      await redis.del(...seen);
    } finally {
      redis.disconnect();
    }
    expect(await r.post(name!)).toBe(200);
    await new Promise((res) => setTimeout(res, 500));
    expect((await r.session(u)).metadata.version).toBe(2);
    expect(await r.transitions(u)).toHaveLength(2);
  });

  it('an old button stays stale after the message retention purged its prompt’s text', async () => {
    const { r, schema, prefix } = await distributedRig({
      BATON_RETENTION: '1d',
      BATON_MESSAGE_RETENTION: '30m',
    });
    const backend = r.baton.backend as DistributedBackend;
    await oldButtonAfterPurge(r, '15557770013', async () => {
      // The copies reach PostgreSQL, and Redis lets the idle session go (its idle TTL is at most
      // the message retention): the prompt is then known from PostgreSQL only.
      await copied(schema, ['outbound'], 4);
      const redis = new Redis(REDIS_URL);
      try {
        const keys = await redis.keys(`${prefix}:*15557770013*`);
        await redis.del(...keys.filter((k) => !k.includes(':seen:') && !k.endsWith(':lock')));
      } finally {
        redis.disconnect();
      }
      return backend.purge();
    });
  });
  it('a reply that failed is deleted after the message retention, the sent ones redacted', async () => {
    const { r, schema } = await distributedRig({ BATON_RETENTION: '1d', BATON_MESSAGE_RETENTION: '30m' });
    const backend = r.baton.backend as DistributedBackend;
    const report = await failedReplyPurged(r, '15557770015', async () => {
      await until(
        async () =>
          (await rows(schema, "SELECT count(*) AS n FROM outbound WHERE status IN ('sent', 'failed')")) === 3,
        'not copied to PostgreSQL',
      );
      return backend.purge();
    });
    expect(report).toMatchObject({ transitions: 0, outbound: 1, redacted: 5, deadLetters: 1 });
    expect(await pgQuery(schema, 'SELECT status FROM outbound ORDER BY seq')).toEqual([
      { status: 'sent' },
      { status: 'sent' },
    ]);
  });
  it("clears an expired session's data past the message retention, keeps the row (outside test QA69-F1)", async () => {
    const { r, schema, prefix } = await distributedRig(DATA_RETENTION);
    const u = '15557770017';
    const backend = r.baton.backend as DistributedBackend;
    await sessionDataCleared(
      r,
      u,
      async () => {
        await copied(schema, ['sessions'], 1);
        // The clock moved by hours, Redis's did not: the session's keys go as its idle expiry
        // (at most the message retention) would have taken them by then.
        if (r.clock.offsetMs > 2 * HOUR) {
          const redis = new Redis(REDIS_URL);
          try {
            const keys = (await redis.keys(`${prefix}:*${u}*`)).filter((k) => !k.includes(':seen:'));
            if (keys.length > 0) await redis.del(...keys);
          } finally {
            redis.disconnect();
          }
        }
        return backend.purge();
      },
      async () =>
        (await pgQuery<{ data: unknown }>(schema, `SELECT snapshot -> 'data' AS data FROM sessions`))[0]!
          .data,
    );
  });
  it('keeps a session awaiting an effect, and one with a reply being sent, past expiry and retention (outside test QA71-R2, R3)', async () => {
    const shop = (currentShop = await startFakeShop());
    const flow = orderStatusFlow({ apiUrl: shop.url, backoffMs: 20 });
    const { r, schema } = await distributedRig(DATA_RETENTION, [flow]);
    const backend = r.baton.backend as DistributedBackend;
    await workInProgressKept(
      r,
      shop,
      { awaiting: '15557770020', sending: '15557770021' },
      () => backend.purge(),
      async (u) => {
        const [row] = await pgQuery<{ version: string; data: unknown }>(
          schema,
          `SELECT version, snapshot -> 'data' AS data FROM sessions WHERE user_id = '${u}'`,
        );
        return row && { version: Number(row.version), data: row.data };
      },
    );
  });
  it(`hands over ${EXPIRE_PER_PURGE} expiries per purge, the rest to the next, each session once (outside test QA74-F3)`, async () => {
    const { r, schema } = await distributedRig(DATA_RETENTION);
    const backend = r.baton.backend as DistributedBackend;
    await expiryCapped(
      r,
      () => backend.purge(),
      () => rows(schema, 'SELECT count(*) AS n FROM sessions WHERE version >= 1'),
    );
  }, 90_000);
});
