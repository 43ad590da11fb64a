/**
 * The burst scenario of the intake-watermark process tests (processes/burst-watermark.test.ts on
 * one Redis, cluster/cluster.test.ts on a Redis Cluster): users each send a shuffled, duplicated
 * burst of four messages whose bodies follow their headers 100-300 ms later, through a `baton
 * ingress` separate from the `baton worker`; every burst that arrived within the window must be
 * one batch. See burst-watermark.test.ts for why the held-back bodies are what splits bursts.
 */
import type { ChildProcess } from 'node:child_process';
import { request } from 'node:http';
import { expect } from 'vitest';
import { signMetaBody } from '../../src/providers/index.ts';
import type { FakeGraph } from './fake-graph.ts';
import { ADMIN_TOKEN, APP_SECRET } from './harness.ts';
import { button, PHONE_ID, text, webhook, type Msg } from './payloads.ts';
import { pgQuery } from './services.ts';

const T0 = 1_750_000_000;

interface Transition {
  version: number;
  kind: string;
  message_ids: string[];
  fencing_token: number;
  at: string;
}

/** The processes under test. */
export interface BurstTarget {
  /** The ingress that receives the webhooks (base URL). */
  readonly webhookBase: string;
  /** An ingress for the admin reads (base URL). */
  readonly adminBase: string;
  /** The run's PostgreSQL schema (BATON_PG_SCHEMA), where the stored messages' times are read. */
  readonly pgSchema: string;
  readonly graph: FakeGraph;
  /** BATON_BUFFER_MS of the processes. */
  readonly windowMs: number;
}

/**
 * Posts a webhook whose body follows its headers after `bodyDelayMs` (a slow client or
 * network): the ingress counts it as received when the headers arrive, stores it after the
 * body. Retries until it is accepted, as Meta does.
 */
export async function deliverHeldBack(base: string, m: Msg, bodyDelayMs = 0): Promise<void> {
  const raw = Buffer.from(JSON.stringify(webhook([m])));
  const once = (): Promise<number> =>
    new Promise((resolve) => {
      const req = request(
        `${base}/webhooks/whatsapp`,
        {
          method: 'POST',
          agent: false,
          headers: {
            'content-type': 'application/json',
            'content-length': raw.length,
            'x-hub-signature-256': signMetaBody(raw, APP_SECRET),
          },
        },
        (res) => {
          res.resume();
          res.on('end', () => resolve(res.statusCode ?? 0));
        },
      );
      req.on('error', () => resolve(0));
      req.flushHeaders();
      setTimeout(() => req.end(raw), bodyDelayMs);
    });
  for (let i = 0; ; i += 1) {
    const status = await once();
    if (status === 200) return;
    if (i > 50) throw new Error(`never accepted: ${status}`);
    await new Promise((res) => setTimeout(res, 100));
  }
}

async function admin<T>(base: string, path: string): Promise<{ status: number; body: T }> {
  const r = await fetch(`${base}/admin/api${path}`, {
    headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
  });
  return { status: r.status, body: (await r.json()) as T };
}

/** Four order-flow messages of user `u`, sent at T0 + 10..13 s: name, product, address, confirm. */
export function orderBurst(u: string): Msg[] {
  return [
    text(u, `Name ${u}`, T0 + 10),
    button(u, 'sku_777b', 'Day Pack', T0 + 11),
    text(u, `Street ${u}`, T0 + 12),
    button(u, 'confirm', 'Confirm', T0 + 13),
  ];
}

/** Posts user `u`'s first message (`hi` at T0), which starts the order flow. */
export function greet(base: string, u: string): Promise<void> {
  return deliverHeldBack(base, text(u, 'hi', T0));
}

/** User `u`'s session once it reached `version` (its data and version); throws at the deadline. */
export async function settledAt(
  base: string,
  u: string,
  version: number,
  deadline = Date.now() + 30_000,
): Promise<{ data: unknown; version: number }> {
  for (;;) {
    const r = await admin<{ data: unknown; metadata: { version: number } }>(
      base,
      `/sessions/${u}?channel=${PHONE_ID}`,
    );
    if (r.status === 200 && r.body.metadata.version >= version)
      return { data: r.body.data, version: r.body.metadata.version };
    if (Date.now() > deadline)
      throw new Error(`${u} never reached version ${version}: ${JSON.stringify(r.body)}`);
    await new Promise((res) => setTimeout(res, 100));
  }
}

/**
 * Null when user `u`'s {@link orderBurst} (message ids `ids`) was applied as one batch after the
 * greeting: one fencing token and time for every transition after version 1, the four applied,
 * version 5, every field right. Else what happened, in one line.
 */
export function burstVerdict(
  u: string,
  ids: ReadonlySet<string>,
  s: { data: unknown; version: number } | null,
  transitions: readonly Transition[],
): string | null {
  const after = transitions.filter((x) => x.version > 1 || x.kind !== 'advance');
  const batches = new Set(after.map((x) => `${x.fencing_token}@${x.at}`));
  const applied = new Set(after.filter((x) => x.kind === 'advance').flatMap((x) => x.message_ids));
  const oneBatch =
    s !== null &&
    s.version === 5 &&
    batches.size === 1 &&
    [...ids].every((id) => applied.has(id)) &&
    JSON.stringify(s.data) ===
      JSON.stringify({
        customer_name: `Name ${u}`,
        product_id: 'sku_777b',
        shipping_address: `Street ${u}`,
      });
  if (oneBatch) return null;
  const shape = after.map((x) => `${x.kind}@${x.fencing_token}/${x.at.slice(17)}`).join(' ');
  return `${u}: version ${s?.version ?? '?'}, ${shape}`;
}

/** User `u`'s transitions, as the admin API lists them. */
export async function transitionsOf(base: string, u: string): Promise<Transition[]> {
  return (await admin<{ transitions: Transition[] }>(base, `/sessions/${u}/transitions?channel=${PHONE_ID}`))
    .body.transitions;
}

/**
 * Runs the scenario for `users` (fresh sessions of the order flow) and asserts that every burst
 * that arrived within the window is one batch: one fencing token and time for the four advances,
 * every field right, the confirmation the only prompt after the first.
 */
export async function expectBurstsWhole(target: BurstTarget, users: readonly string[]): Promise<void> {
  const { webhookBase, adminBase, graph, windowMs } = target;
  await Promise.all(users.map((u) => greet(webhookBase, u)));
  for (const u of users) await settledAt(adminBase, u, 1);

  const bursts = new Map(users.map((u) => [u, orderBurst(u)]));
  // The bursts start 100 ms apart: 120 requests at once from this process (which may also run
  // a proxy) would spread each burst over more than the window on a loaded machine.
  await Promise.all(
    users.map(async (u, i) => {
      await new Promise((r) => setTimeout(r, i * 100));
      const b = bursts.get(u)!;
      const deliveries = [b[2]!, b[0]!, b[3]!, b[1]!, b[0]!, b[3]!];
      // Each delivery after a random pause of up to 40 ms, as a user's burst; its body follows
      // its headers 100-300 ms later.
      await Promise.all(
        deliveries.map(async (m) => {
          await new Promise((r) => setTimeout(r, Math.random() * 40));
          await deliverHeldBack(webhookBase, m, 100 + Math.random() * 200);
        }),
      );
    }),
  );

  // A split burst may never reach version 5: one deadline for all users.
  const deadline = Date.now() + 20_000;
  const split: string[] = [];
  const judged: string[] = [];
  for (const u of users) {
    const s = await settledAt(adminBase, u, 5, deadline).catch(() => null);
    const transitions = await transitionsOf(adminBase, u);
    // The window counts from arrival at the ingress: a burst this machine delivered over more
    // than the window may be split by the rules, so only bursts that arrived within it count.
    const stored = await pgQuery<{ message: { id: string; storedAt: number } }>(
      target.pgSchema,
      'SELECT message FROM inbound WHERE channel = $1 AND user_id = $2',
      [PHONE_ID, u],
    );
    const ids = new Set(bursts.get(u)!.map((m) => m.id));
    const times = stored.filter((r) => ids.has(r.message.id)).map((r) => r.message.storedAt);
    if (times.length === 4 && Math.max(...times) - Math.min(...times) > windowMs) continue;
    judged.push(u);
    const wrong = burstVerdict(u, ids, s, transitions);
    if (wrong !== null) split.push(wrong);
  }
  // Most bursts arrive within the window (else this test proves nothing).
  expect(judged.length, 'bursts that arrived within the window').toBeGreaterThanOrEqual(users.length / 2);
  expect(split, `bursts split: ${split.length} of ${judged.length}`).toEqual([]);

  await expectOnePromptPerBurst(graph, judged);
}

/** Each of `users` got the name question, then the confirmation of its whole burst, and nothing else. */
export async function expectOnePromptPerBurst(graph: FakeGraph, users: readonly string[]): Promise<void> {
  for (const u of users) {
    await graph.waitFor(
      (x) => x.body.to === `+${u}` && x.body.biz_opaque_callback_data === 'baton:order:completed:5',
    );
    const prompts = graph.sent
      .filter((x) => x.body.to === `+${u}`)
      .map((x) => x.body.biz_opaque_callback_data);
    expect(prompts, u).toEqual(['baton:order:ask_name:1', 'baton:order:completed:5']);
  }
}

/** The processes a stall test sends to and reads from. */
export type StalledTarget = Pick<BurstTarget, 'webhookBase' | 'adminBase' | 'graph'>;

/**
 * 8 users (ids `<prefix>0000`...) each send a burst through a process the machine stops: each
 * name is stored; 30 ms later `stopped` is stopped (SIGSTOP), the rest of each burst (and a
 * duplicate of the name) reaches its socket, and it runs again after `stallMs`; `meanwhile` runs
 * while it is stopped. Asserts that every burst is one batch, with one prompt.
 */
export async function expectStalledBurstsWhole(
  target: StalledTarget,
  stopped: ChildProcess,
  prefix: string,
  stallMs: number,
  meanwhile?: () => Promise<void>,
): Promise<void> {
  const { webhookBase, adminBase, graph } = target;
  const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
  const users = Array.from({ length: 8 }, (_, i) => `${prefix}${String(i).padStart(4, '0')}`);
  await Promise.all(users.map((u) => greet(webhookBase, u)));
  for (const u of users) await settledAt(adminBase, u, 1);
  const bursts = new Map(users.map((u) => [u, orderBurst(u)]));

  await Promise.all(users.map((u) => deliverHeldBack(webhookBase, bursts.get(u)![0]!)));
  await sleep(30);
  stopped.kill('SIGSTOP');
  const rest = Promise.all(
    users.flatMap((u) => {
      const [name, ...others] = bursts.get(u)!;
      return [...others.reverse(), name!].map((m) => deliverHeldBack(webhookBase, m));
    }),
  );
  const over = sleep(stallMs);
  await meanwhile?.();
  await over;
  stopped.kill('SIGCONT');
  await rest;

  const deadline = Date.now() + 20_000;
  const split: string[] = [];
  for (const u of users) {
    const s = await settledAt(adminBase, u, 5, deadline).catch(() => null);
    const ids = new Set(bursts.get(u)!.map((m) => m.id));
    const wrong = burstVerdict(u, ids, s, await transitionsOf(adminBase, u));
    if (wrong !== null) split.push(wrong);
  }
  expect(split, `bursts split: ${split.length} of ${users.length}`).toEqual([]);
  await expectOnePromptPerBurst(graph, users);
}
