/**
 * SPEC 1.1 with a Redis that keeps nothing on disk: a webhook answered `200` is in PostgreSQL's
 * intake log too, so when Redis is SIGKILLed and comes back empty, the reaper puts every
 * acknowledged, unprocessed message back into its mailbox (with its first storage time) and the
 * conversation goes on; messages already consumed are not applied again. With a Redis that
 * fsyncs every write the log stays off (no PostgreSQL write per webhook), and
 * `BATON_INTAKE_LOG=off` turns it off knowingly.
 */
import { Redis } from 'ioredis';
import pg from 'pg';
import { afterEach, expect, it } from 'vitest';
import type { DistributedBackend } from '../../src/backends/distributed/index.ts';
import { startHarness, type Harness } from '../support/harness.ts';
import { button, PHONE_ID, text, webhook } from '../support/payloads.ts';
import { startPrivateRedis, type PrivateRedis } from '../support/redis-server.ts';
import { proxyOf } from '../support/tcp-proxy.ts';
import { DATABASE_URL, describeServices, dropIsolation, isolation, pgQuery } from '../support/services.ts';

const ts = 1_750_000_000;
let cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => undefined);
  cleanups = [];
});

async function rig(
  persist: boolean,
  env: Record<string, string> = {},
): Promise<{
  h: Harness;
  redis: PrivateRedis;
  schema: string;
  prefix: string;
  logged: () => Promise<number>;
  /** Another Baton on the same Redis and schema (another process, for what it does). */
  another: () => Promise<Harness>;
}> {
  const redis = await startPrivateRedis({ persist });
  cleanups.push(() => redis.stop());
  const iso = isolation();
  const prefix = iso.prefix.replace(/-/g, '_');
  cleanups.push(() => dropIsolation(null, iso.schema));
  const start = async (): Promise<Harness> => {
    const started = await startHarness({
      REDIS_URL: redis.url,
      DATABASE_URL,
      BATON_REDIS_PREFIX: prefix,
      BATON_PG_SCHEMA: iso.schema,
      ...env,
    });
    cleanups.push(() => started.close());
    return started;
  };
  const h = await start();
  const logged = async (): Promise<number> =>
    Number((await pgQuery<{ n: string }>(iso.schema, 'SELECT count(*) AS n FROM intake_log'))[0]!.n);
  return { h, redis, schema: iso.schema, prefix, logged, another: start };
}

/**
 * `u` says "hi" (version 1, copied), then "Jane" with the transitions table locked: version 2 is
 * in Redis and its journal copy waits in PostgreSQL until the returned client commits.
 */
async function janeHeldOutOfPostgres(h: Harness, schema: string, u: string): Promise<pg.Client> {
  expect((await h.post(webhook([text(u, 'hi', ts)]))).status).toBe(200);
  await h.settled(u, 1);
  const stall = new pg.Client({ connectionString: DATABASE_URL });
  await stall.connect();
  cleanups.push(() => stall.end());
  await stall.query('BEGIN');
  await stall.query(`LOCK TABLE "${schema}".transitions IN EXCLUSIVE MODE`);
  expect((await h.post(webhook([text(u, 'Jane', ts + 1)]))).status).toBe(200);
  const backend = h.baton.backend as DistributedBackend;
  await h.until(async () => (await backend.load({ channel: PHONE_ID, user: u }))?.version === 2);
  return stall;
}

/** The user's one reply so far is recorded in PostgreSQL as sent (or past it), not pending. */
async function firstPromptRecorded(schema: string, user: string): Promise<boolean> {
  const rows = await pgQuery<{ status: string }>(schema, 'SELECT status FROM outbound WHERE user_id = $1', [
    user,
  ]);
  return rows.length === 1 && rows[0]!.status !== 'pending';
}

describeServices('the intake log (a Redis without AOF)', () => {
  it('puts back what a Redis restart lost, in order, and applies nothing twice', async () => {
    // A long buffer window: the messages below are acknowledged and still in the mailbox when
    // Redis dies.
    const { h, redis, schema, prefix, logged } = await rig(false, { BATON_BUFFER_MS: '2500' });
    const [a, b] = ['15550501001', '15550501002'];
    const hi = webhook([text(a, 'hi', ts)]);
    expect((await h.post(hi)).status).toBe(200);
    await h.settled(a, 1);
    // Its prompt recorded as sent in PostgreSQL too (else the restart may send it again, as SPEC
    // 1.6 allows after a crash between a send and its record).
    await h.until(() => firstPromptRecorded(schema, a));
    expect((await h.post(webhook([text(a, 'Jane', ts + 1)]))).status).toBe(200);
    expect((await h.post(webhook([text(b, 'hello', ts)]))).status).toBe(200);
    expect(await logged()).toBe(3);
    // Redis dies at once: "Jane" is only milliseconds old when it is back.

    await redis.kill();
    await redis.restart(); // empty
    const backend = h.baton.backend as DistributedBackend;
    await h.until(async () => (await backend.health()).redis, 10_000);
    // The prefix is claimed again: another deployment's start on it is still refused.
    const probe = new Redis(redis.url, { lazyConnect: true });
    cleanups.push(async () => probe.disconnect());
    await h.until(async () => (await probe.exists(`${prefix}:owner`)) === 1, 5_000);
    // Meta redelivers "hi": Redis no longer knows it, PostgreSQL does (consumed): a duplicate.
    expect((await h.post(hi)).status).toBe(200);
    // What Redis lost is back once it is (no reaper pass needed), before what comes next.
    await h.until(
      async () => (await backend.pending({ channel: PHONE_ID, user: a }, 10)).length === 1,
      5_000,
    );
    expect((await h.post(webhook([text(a, 'Doe', ts + 1)]))).status).toBe(200);

    // a's two texts are one name (one batch, order kept); b got its first prompt; a's "hi",
    // consumed before the crash and delivered again after it, was not applied again.
    const sa = await h.settled(a, 2);
    expect(sa.data).toEqual({ customer_name: 'Jane Doe' });
    expect((await h.transitions(a)).map((r) => r.kind)).toEqual(['advance', 'advance']);
    expect((await h.settled(b, 1)).current_step).toBe('ask_name');
    const prompts = h.graph.sent
      .filter((c) => c.body.to === `+${a}`)
      .map((c) => c.body.biz_opaque_callback_data);
    expect(prompts).toEqual(['baton:order:ask_name:1', 'baton:order:choose_product:2']);

    // Consumed messages leave the log.
    await h.until(async () => {
      await backend.reapOnce(30_000, { force: true });
      return (await logged()) === 0;
    }, 10_000);
  }, 60_000);

  it('a burst that Redis lost part of is one batch: the holder waits for the restore after an outage (outside test QA72-F1)', async () => {
    const { h, redis, schema } = await rig(false, { BATON_BUFFER_MS: '1500' });
    const u = '15550501003';
    expect((await h.post(webhook([text(u, 'hi', ts)]))).status).toBe(200);
    await h.settled(u, 1);
    const jane = text(u, 'Jane', ts + 1);
    const doe = text(u, 'Doe', ts + 2);
    expect((await h.post(webhook([jane]))).status).toBe(200);
    expect((await h.post(webhook([doe]))).status).toBe(200);
    // Redis loses "Doe" (the last second before a crash, with appendfsync everysec): logged in
    // PostgreSQL, gone from the mailbox. "Jane" survives, and so does the session's schedule.
    const direct = new Redis(redis.url);
    cleanups.push(async () => direct.disconnect());
    const [seen] = await direct.keys(`*:seen:${doe.id}`);
    expect(seen).toBeDefined();
    const base = seen!.slice(0, seen!.indexOf(':seen:'));
    await direct.multi().del(seen!).zrem(`${base}:mbox`, doe.id).hdel(`${base}:msgs`, doe.id).exec();
    // The restore after the outage is slow (PostgreSQL busy): it ends after the window would.
    const busy = new pg.Client({ connectionString: DATABASE_URL });
    await busy.connect();
    cleanups.push(() => busy.end());
    await busy.query('BEGIN');
    await busy.query(`LOCK TABLE "${schema}".intake_log IN ACCESS EXCLUSIVE MODE`);
    await new Promise((r) => setTimeout(r, 300)); // "Doe" older than the restore's 200 ms
    // The outage: every connection of Baton's dropped; its client reconnects and restores.
    await direct.call('CLIENT', 'KILL', 'TYPE', 'normal', 'SKIPME', 'yes');
    await new Promise((r) => setTimeout(r, 2500)); // past the window of "Jane"
    await busy.query('COMMIT');
    const s = await h.settled(u, 2);
    expect(s.data).toEqual({ customer_name: 'Jane Doe' });
    expect((await h.transitions(u)).map((r) => r.kind)).toEqual(['advance', 'advance']);
  }, 60_000);

  it("puts one webhook's messages back in the order they came, not in the order of their ids (outside test QA43-F1)", async () => {
    const { h, redis } = await rig(false, { BATON_BUFFER_MS: '2500' });
    const u = '15550501003';
    expect((await h.post(webhook([text(u, 'hi', ts)]))).status).toBe(200);
    await h.settled(u, 1);
    // One webhook, one second: "Jane" then "Doe", whose ids sort the other way round.
    const burst = [text(u, 'Jane', ts + 1, 'wamid.ZZZ-jane'), text(u, 'Doe', ts + 1, 'wamid.AAA-doe')];
    expect((await h.post(webhook(burst))).status).toBe(200);
    const backend = h.baton.backend as DistributedBackend;
    const key = { channel: PHONE_ID, user: u };
    expect((await backend.pending(key, 10)).map((m) => m.id)).toEqual(['wamid.ZZZ-jane', 'wamid.AAA-doe']);

    await redis.kill();
    await redis.restart(); // empty
    await h.until(async () => (await backend.health()).redis, 10_000);
    await h.until(async () => (await backend.pending(key, 10)).length === 2, 5_000);
    expect((await backend.pending(key, 10)).map((m) => m.id)).toEqual(['wamid.ZZZ-jane', 'wamid.AAA-doe']);
    expect((await h.settled(u, 2)).data).toEqual({ customer_name: 'Jane Doe' });
  }, 60_000);

  it("keeps one webhook's order when its redelivery stores one message and the reaper restores the other (a CI run of volatile-redis-crash)", async () => {
    const { h, redis } = await rig(false, { BATON_BUFFER_MS: '2500' });
    const u = '15550501004';
    expect((await h.post(webhook([text(u, 'hi', ts)]))).status).toBe(200);
    await h.settled(u, 1);
    // One webhook, one second: a stale button (from a later step), then the name.
    const tap = button(u, 'confirm', 'Confirm', ts + 1);
    const name = text(u, 'Jane', ts + 1);
    expect((await h.post(webhook([tap, name]))).status).toBe(200);
    // Logged in PostgreSQL, not in Redis: as a first delivery answered 503 while Redis was away.
    const direct = new Redis(redis.url);
    cleanups.push(async () => direct.disconnect());
    for (const m of [tap, name]) {
      const [seen] = await direct.keys(`*:seen:${m.id}`);
      const base = seen!.slice(0, seen!.indexOf(':seen:'));
      await direct.multi().del(seen!).zrem(`${base}:mbox`, m.id).hdel(`${base}:msgs`, m.id).exec();
    }
    await new Promise((r) => setTimeout(r, 600)); // older than the reaper's 500 ms
    // Meta's redelivery stores the button (its other message's op has not run yet), then the
    // reaper restores the name from the log, then the redelivery's second op finds it stored.
    expect((await h.post(webhook([tap]))).status).toBe(200);
    const backend = h.baton.backend as DistributedBackend;
    await backend.reapOnce(30_000, { force: true });
    const key = { channel: PHONE_ID, user: u };
    expect((await backend.pending(key, 10)).map((m) => [m.id, m.restored === true])).toEqual([
      [tap.id, false],
      [name.id, true],
    ]);
    expect((await h.post(webhook([tap, name]))).status).toBe(200);

    // The button first (a notice at ask_name), then the name: as the user sent them.
    expect((await h.settled(u, 2)).data).toEqual({ customer_name: 'Jane' });
    expect((await h.transitions(u)).map((r) => r.kind)).toEqual(['advance', 'stale_input', 'advance']);
    const replies = h.graph.sent
      .filter((c) => c.body.to === `+${u}`)
      .map((c) => c.body.biz_opaque_callback_data);
    expect(replies).toEqual([
      'baton:order:ask_name:1',
      `baton:order:ask_name:1:${tap.id}`,
      'baton:order:choose_product:2',
    ]);
  }, 60_000);

  it('a copy to PostgreSQL in flight when Redis dies: the restore waits for it, the next holder goes on from it (no fork, nothing twice)', async () => {
    const { h, redis, schema } = await rig(false, { BATON_BUFFER_MS: '0' });
    const u = '15550501010';
    const key = { channel: PHONE_ID, user: u };
    const backend = h.baton.backend as DistributedBackend;
    // PostgreSQL stalls (a lock on the transitions table): "Jane" is applied in Redis and its
    // copy to PostgreSQL waits, holding the session's commit out of PostgreSQL.
    const stall = await janeHeldOutOfPostgres(h, schema, u);
    // Redis dies with that commit and its lease; the intake log still has "Jane", and
    // PostgreSQL does not know yet that it was consumed.
    await redis.kill();
    await redis.restart(); // empty
    await h.until(async () => (await backend.health()).redis, 10_000);
    const reaping = backend.reapOnce(30_000, { force: true }).catch(() => undefined);
    await new Promise((r) => setTimeout(r, 1500)); // the restores at once, 250 ms and 1 s later
    await stall.query('COMMIT');
    await reaping;
    // The copy lands. "Jane" was consumed once: it is not put back, and the session's next
    // holder goes on from version 2 (not from PostgreSQL's version 1 before the copy).
    // (Not h.settled: the lost lease's watchdog entry may count as held for a while yet.)
    let seen = '';
    const at = (version: number) =>
      h
        .until(async () => {
          const v = await h.session(u);
          const pending = await backend.pending(key, 10);
          const rows = await pgQuery<{ version: string; fence: string }>(
            schema,
            'SELECT version, fence FROM sessions WHERE user_id = $1',
            [u],
          );
          const fences = await pgQuery<{ floor: string; ceiling: string; era: string }>(
            schema,
            'SELECT floor, ceiling, era FROM fence_blocks WHERE user_id = $1',
            [u],
          );
          const consumed = await pgQuery<{ id: string }>(
            schema,
            'SELECT id FROM inbound WHERE user_id = $1',
            [u],
          );
          const logged = await pgQuery<{ id: string }>(
            schema,
            'SELECT id FROM intake_log WHERE user_id = $1',
            [u],
          );
          seen =
            `version ${v?.metadata.version}, pending ${pending.map((m) => m.id).join(',')}; PostgreSQL ` +
            JSON.stringify({ rows, fences, consumed, logged, transitions: await h.transitions(u) });
          return v && v.metadata.version >= version && pending.length === 0 ? v : undefined;
        }, 60_000)
        .catch(() => {
          throw new Error(`never at version ${version} with nothing pending: ${seen}`);
        });
    const s = await at(2);
    expect(s.current_step).toBe('choose_product');
    expect(s.data).toEqual({ customer_name: 'Jane' });
    await backend.reapOnce(30_000, { force: true });
    expect((await h.post(webhook([text(u, 'what?', ts + 2)]))).status).toBe(200);
    await at(3);
    const records = await h.transitions(u);
    expect(records.map((r) => [r.version, r.kind])).toEqual([
      [1, 'advance'],
      [2, 'advance'],
      [3, 'retry'],
    ]);
    expect(await backend.pending(key, 10)).toEqual([]);
  }, 150_000);

  it('a support agent reading a session while its copy to PostgreSQL is in flight after Redis died plants no old state: the next message goes on from the copy (no fork, nothing forgotten)', async () => {
    const { h, redis, schema } = await rig(false, { BATON_BUFFER_MS: '0' });
    const u = '15550501015';
    const backend = h.baton.backend as DistributedBackend;
    const stall = await janeHeldOutOfPostgres(h, schema, u);
    await redis.kill();
    await redis.restart(); // empty
    await h.until(async () => (await backend.health()).redis, 10_000);
    // The dashboard shows the session meanwhile: PostgreSQL's version 1, the copy still held.
    expect((await h.session(u))?.metadata.version).toBe(1);
    await stall.query('COMMIT');
    await h.until(
      async () => (await pgQuery(schema, 'SELECT 1 FROM transitions WHERE version = 2')).length === 1,
    );
    // The user goes on: from "Jane" (version 2), not from the version the read saw.
    expect((await backend.load({ channel: PHONE_ID, user: u }))?.version).toBe(2);
    expect((await h.post(webhook([text(u, 'what?', ts + 2)]))).status).toBe(200);
    const s = await h.settled(u, 3);
    expect(s.data).toEqual({ customer_name: 'Jane' });
    expect((await h.transitions(u)).map((r) => [r.version, r.kind])).toEqual([
      [1, 'advance'],
      [2, 'advance'],
      [3, 'retry'],
    ]);
  }, 60_000);

  it('a copy that has not reached PostgreSQL when Redis is back is refused when it does: the messages it held are applied once, by the next holder (no fork, no second send)', async () => {
    const { h, redis, schema, another } = await rig(false, { BATON_BUFFER_MS: '0' });
    const u = '15550501020';
    const key = { channel: PHONE_ID, user: u };
    // Journal copies held before they reach PostgreSQL at all (a process waiting for a
    // connection, or frozen), then let go in the order the test chooses.
    const held: Array<{ go(): void; done: Promise<unknown> }> = [];
    cleanups.push(async () => held.forEach((c) => c.go()));
    const holdCopies = (baton: Harness): { stop(): void } => {
      const store = (
        baton.baton.backend as unknown as {
          ctx: { pg: { apply(e: readonly unknown[]): Promise<Set<string>> } };
        }
      ).ctx.pg;
      const apply = store.apply.bind(store);
      let hold = true;
      store.apply = (entries) => {
        if (!hold) return apply(entries);
        let go = (): void => undefined;
        const copied = new Promise<void>((r) => (go = r)).then(() => apply(entries));
        held.push({ go, done: copied.catch(() => undefined) });
        return copied;
      };
      return { stop: () => (hold = false) };
    };
    expect((await h.post(webhook([text(u, 'hi', ts)]))).status).toBe(200);
    await h.settled(u, 1);
    await h.until(() => firstPromptRecorded(schema, u));
    // This process applies "Jane" in Redis; its copy to PostgreSQL is held. Then Redis dies.
    holdCopies(h);
    expect((await h.post(webhook([text(u, 'Jane', ts + 1)]))).status).toBe(200);
    const backend = h.baton.backend as DistributedBackend;
    await h.until(async () => (await backend.load(key))?.version === 2 && held.length > 0);
    // This process then freezes (it claims nothing more; its copy stays held), and another
    // one takes over.
    void h.baton.engine.stop();
    const next = await another();
    const nextCopies = holdCopies(next);
    await redis.kill();
    await redis.restart(); // empty
    const lost = held.length; // the copies of Redis's lost lifetime
    const nextBackend = next.baton.backend as DistributedBackend;
    await next.until(
      async () => (await backend.health()).redis && (await nextBackend.health()).redis,
      10_000,
    );
    // The restore finds "Jane" unconsumed (no copy in PostgreSQL to wait for) and puts it back;
    // the other process loads version 1 from PostgreSQL and applies it: a version 2 of its
    // own, whose copy is held too.
    await next.until(
      async () =>
        (await nextBackend.load(key))?.version === 2 &&
        (await nextBackend.pending(key, 10)).length === 0 &&
        held.length > lost,
      20_000,
    );
    // The lost lifetime's copies reach PostgreSQL first, and are refused; then the next
    // holder's: one chain of versions, "Jane" applied once.
    for (const c of held.slice(0, lost)) {
      c.go();
      await c.done;
    }
    nextCopies.stop();
    for (const c of held.slice(lost)) c.go();
    const s = await next.until(async () => {
      const rows = await pgQuery<{ version: string }>(
        schema,
        'SELECT version FROM sessions WHERE user_id = $1',
        [u],
      );
      return rows[0]?.version === '2' ? ((await next.session(u)) ?? undefined) : undefined;
    }, 20_000);
    expect(s.current_step).toBe('choose_product');
    expect(s.data).toEqual({ customer_name: 'Jane' });
    expect((await next.post(webhook([text(u, 'what?', ts + 2)]))).status).toBe(200);
    await next.until(async () => (await next.session(u))?.metadata.version === 3, 20_000);
    const records = await next.transitions(u);
    expect(records.map((r) => [r.version, r.kind])).toEqual([
      [1, 'advance'],
      [2, 'advance'],
      [3, 'retry'],
    ]);
    // "Jane"'s prompt went out once: the refused copy's batch never sent it.
    const prompts = (): unknown[] =>
      [...h.graph.sent, ...next.graph.sent]
        .filter((c) => c.body.to === `+${u}`)
        .map((c) => c.body.biz_opaque_callback_data)
        .sort();
    await next.until(async () => prompts().length >= 3);
    await new Promise((r) => setTimeout(r, 500));
    expect(prompts()).toEqual([
      'baton:order:ask_name:1',
      'baton:order:choose_product:2',
      'baton:order:choose_product:3',
    ]);
  }, 150_000);

  it('a reply committed and not yet sent when Redis dies goes out once Redis is back, with no new message', async () => {
    const { h, redis, schema } = await rig(false, { BATON_BUFFER_MS: '0' });
    const u = '15550501011';
    const backend = h.baton.backend as DistributedBackend;
    // Graph is down: the name prompt is committed (PostgreSQL has it, pending) and not sent.
    h.graph.failNext(1000, { status: 503 });
    expect((await h.post(webhook([text(u, 'hi', ts)]))).status).toBe(200);
    await h.until(async () => {
      const rows = await pgQuery<{ status: string }>(
        schema,
        'SELECT status FROM outbound WHERE user_id = $1',
        [u],
      );
      return rows.length === 1 && rows[0]!.status === 'pending';
    });
    await h.graph.waitForRequest((c) => c.body.to === `+${u}`);
    // Redis dies with the session; Graph is back. The user writes nothing more.
    await redis.kill();
    h.graph.reset();
    await redis.restart(); // empty
    await h.until(async () => (await backend.health()).redis, 10_000);
    const call = await h.graph.waitFor((c) => c.body.to === `+${u}`, 10_000);
    expect(call.body.biz_opaque_callback_data).toBe('baton:order:ask_name:1');
  }, 60_000);

  it('answers 503, not 200, while PostgreSQL is away (Redis alone would not keep the message)', async () => {
    const { proxy, url: viaProxy } = await proxyOf(DATABASE_URL);
    cleanups.push(async () => proxy.close());
    const { h, logged } = await rig(false, { DATABASE_URL: viaProxy });
    const u = '15550501005';
    const hi = webhook([text(u, 'hi', ts)]);
    proxy.block();
    expect((await h.post(hi)).status).toBe(503);
    proxy.unblock();
    // Meta retries: now it is stored, once.
    await h.until(async () => (await h.post(hi)).status === 200, 15_000);
    expect((await h.settled(u, 1)).current_step).toBe('ask_name');
    expect(await h.transitions(u)).toHaveLength(1);
    expect(await logged()).toBeLessThanOrEqual(1);
  }, 60_000);

  // Read once at start, a Redis that stopped keeping every write later left webhooks acknowledged
  // with no durable copy anywhere: 40 of 40 lost at the next restart (outside test QA79-F1).
  it('turns on when Redis stops keeping every write: CONFIG SET at run time, or restarted without AOF', async () => {
    const hold = { BATON_BUFFER_MS: '60000' }; // acknowledged, never processed before the crash
    for (const how of ['config set', 'restarted without AOF'] as const) {
      const { h, redis, logged } = await rig(true, hold);
      const backend = h.baton.backend as DistributedBackend;
      // On: a webhook is logged. Probes until one is (each a message of its own).
      let probes = 0;
      const turnedOn = async (): Promise<boolean> => {
        const res = await h.post(webhook([text('15550501019', `probe ${probes}`, ts + probes)]));
        if (res.status === 200) probes += 1;
        return (await logged()) > 0;
      };
      expect(await turnedOn()).toBe(false);
      if (how === 'config set') {
        const admin = new Redis(redis.url);
        await admin.config('SET', 'appendonly', 'no');
        admin.disconnect();
      } else {
        await redis.kill();
        await redis.restart({ persist: false });
      }
      await h.until(turnedOn, 10_000);
      const before = await logged();
      const users = ['15550501011', '15550501012', '15550501013'];
      for (const u of users) expect((await h.post(webhook([text(u, 'hi', ts)]))).status).toBe(200);
      expect(await logged()).toBe(before + users.length);
      // Redis dies with what it was never told to keep; the log puts it back.
      await redis.kill();
      await redis.restart({ persist: false });
      await h.until(async () => (await backend.health()).redis, 10_000);
      for (const u of users)
        await h.until(
          async () => (await backend.pending({ channel: PHONE_ID, user: u }, 10)).length === 1,
          10_000,
        );
    }
  }, 90_000);

  it('stays off with a Redis that fsyncs every write, and when BATON_INTAKE_LOG=off', async () => {
    const durable = await rig(true);
    expect((await durable.h.post(webhook([text('15550501003', 'hi', ts)]))).status).toBe(200);
    await durable.h.settled('15550501003', 1);
    expect(await durable.logged()).toBe(0);

    const off = await rig(false, { BATON_INTAKE_LOG: 'off' });
    expect((await off.h.post(webhook([text('15550501004', 'hi', ts)]))).status).toBe(200);
    await off.h.settled('15550501004', 1);
    expect(await off.logged()).toBe(0);
  }, 60_000);
});
