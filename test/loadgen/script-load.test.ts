/**
 * Scripted load: every user plays a conversation file against a real embedded Baton, under
 * chaos; the verdict is clean when Baton behaves, and not clean when the replies or the end
 * state differ from the script.
 */
import { once } from 'node:events';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runLoadCommand } from '../../src/cli/load.ts';
import { ConversationScript, fill } from '../../src/simulate/script.ts';
import { runLoad } from '../../loadgen/index.ts';
import { startLoadTarget, type LoadTarget } from '../support/load-target.ts';
import { scriptProblems } from '../../loadgen/script.ts';
import { startShopStub } from '../../src/simulate/shop-stub.ts';
import { freePort } from '../support/procs.ts';

const ORDER_SCRIPT = resolve(import.meta.dirname, '../../loadgen/scripts/order.json');
const orderScript = ConversationScript.parse(JSON.parse(readFileSync(ORDER_SCRIPT, 'utf8')));

let t: LoadTarget;

beforeAll(async () => {
  t = await startLoadTarget('script-load', { BATON_BUFFER_MS: '1000' }, { concurrency: 8 });
});

afterAll(async () => {
  await t?.close();
});

describe('scripted load', () => {
  it('20 users play the order script with duplicates, shuffled concurrent bursts: a clean verdict', async () => {
    const report = await runLoad({
      url: t.url,
      adminToken: t.adminToken,
      secret: t.secret,
      sink: t.sink,
      users: 20,
      seed: 11,
      script: orderScript,
      chaos: { duplicates: 0.4, shuffle: true, concurrentBursts: true },
      replyTimeoutMs: 8_000,
    });
    const v = report.verdict;
    expect(v.problems).toEqual([]);
    expect(v).toMatchObject({
      clean: true,
      users: 20,
      usersCompleted: 20,
      lost: 0,
      duplicated: 0,
      outOfOrder: 0,
      duplicatePrompts: 0,
      wrongReplies: 0,
      versionErrors: 0,
    });
    // 6 messages each (the address is a burst of two), 5 replies each.
    expect(v.messages).toEqual({ planned: 120, sent: 120, acked: 120, rejected: 0 });
    expect(report.reply.count).toBe(100);
  });

  it('replies that differ from the script, and a wrong end state, make the verdict not clean', async () => {
    const wrongReply = ConversationScript.parse({
      ...orderScript,
      steps: orderScript.steps.map((s, i) => (i === 2 ? { ...s, expect: ['pizza'] } : s)),
    });
    const r1 = await runLoad({
      url: t.url,
      adminToken: t.adminToken,
      secret: t.secret,
      sink: t.sink,
      users: 3,
      script: wrongReply,
      replyTimeoutMs: 5_000,
    });
    expect(r1.verdict).toMatchObject({ clean: false, wrongReplies: 3, usersCompleted: 0 });
    expect(r1.verdict.problems[0]).toMatch(
      /step 3 reply 1: expected text containing "pizza"; got: Where should we ship it\?/,
    );

    const wrongEnd = ConversationScript.parse({ ...orderScript, end: { step: 'cancelled' } });
    const r2 = await runLoad({
      url: t.url,
      adminToken: t.adminToken,
      secret: t.secret,
      sink: t.sink,
      users: 2,
      script: wrongEnd,
      replyTimeoutMs: 5_000,
    });
    expect(r2.verdict).toMatchObject({ clean: false, outOfOrder: 2, usersCompleted: 2 });

    const missing = ConversationScript.parse({
      ...orderScript,
      steps: [{ send: 'hi', expect: ['what is your name', 'a reply that never comes'] }],
      end: undefined,
    });
    const r3 = await runLoad({
      url: t.url,
      adminToken: t.adminToken,
      secret: t.secret,
      sink: t.sink,
      users: 2,
      script: missing,
      replyTimeoutMs: 1_500,
    });
    expect(r3.verdict).toMatchObject({ clean: false, lostReplies: 2 });
  });

  it('fills placeholders and refuses chat-only commands', () => {
    expect(fill('ORD-1{{n5}} for {{user}} #{{n}} ORD-{{n4}}2', 7, '155500')).toBe(
      'ORD-100007 for 155500 #7 ORD-00072',
    );
    expect(
      scriptProblems(
        ConversationScript.parse({ steps: [{ send: '/replay' }, { send: '/user 2' }, { send: 'hi' }] }),
      ),
    ).toEqual([
      'step 1: /replay has no meaning under load (every user plays the script once)',
      'step 2: /user has no meaning under load (every user plays the script once)',
    ]);
  });
});

describe('baton load --start --script', () => {
  const run = async (
    flags: Parameters<typeof runLoadCommand>[0],
  ): Promise<{ code: number; out: string; err: string }> => {
    let out = '';
    let err = '';
    const code = await runLoadCommand(flags, {
      out: (l) => (out += `${l}\n`),
      err: (t) => (err += t),
      tty: false,
      env: { BATON_BUFFER_MS: '1000' },
    });
    return { code, out, err };
  };

  it('starts an embedded Baton, plays the script and exits 0 on a clean verdict', async () => {
    const r = await run({ start: true, script: ORDER_SCRIPT, users: '10', chaos: true, progress: false });
    expect(r.out).toContain('verdict: CLEAN (10/10 users completed the script)');
    expect(r.out).toContain('chaos: duplicates 30%, shuffle, concurrent');
    expect(r.code).toBe(0);
  }, 30_000);

  it('--flow without --url serves the flow from an embedded Baton', async () => {
    const r = await run({
      flow: resolve(import.meta.dirname, '../../src/bots/order.ts'),
      script: ORDER_SCRIPT,
      users: '3',
      progress: false,
    });
    expect(r.err).toMatch(/^baton load: 3 users against http:\/\/127\.0\.0\.1:\d+ \(embedded\)/);
    expect(r.out).toContain('verdict: CLEAN (3/3 users completed the script)');
    expect(r.code).toBe(0);
  }, 30_000);

  it('--port puts the embedded Baton on that port; with --url it is a usage error (outside test A9)', async () => {
    const port = await freePort();
    const r = await run({
      start: true,
      port: String(port),
      script: ORDER_SCRIPT,
      users: '2',
      progress: false,
    });
    expect(r.err).toMatch(
      new RegExp(`^baton load: 2 users against http://127\\.0\\.0\\.1:${port} \\(embedded\\)`),
    );
    expect(r.code).toBe(0);
    const both = await run({ url: 'http://127.0.0.1:9', port: '4000', adminToken: 't' });
    expect(both.code).toBe(2);
    expect(both.err).toBe(
      'baton: --port is for the embedded Baton --start starts; --url names a running one\n',
    );
    // Without --start it was ignored, and the load went to the default URL (outside test QA11-F7).
    const alone = await run({ port: '4000', adminToken: 't' });
    expect(alone).toMatchObject({
      code: 2,
      err: 'baton: --port is for the embedded Baton --start starts; --url names a running one\n',
    });
    // Named before the token that is missing too (outside test QA13-F3).
    expect(await run({ port: '4000' })).toMatchObject({
      code: 2,
      err: 'baton: --port is for the embedded Baton --start starts; --url names a running one\n',
    });
    // The embedded Baton's port taken: said so, not blamed on the sink (outside test QA11-F2).
    const taken = createServer().listen(0, '127.0.0.1');
    await once(taken, 'listening');
    try {
      const busy = (taken.address() as AddressInfo).port;
      const r2 = await run({ start: true, port: String(busy), users: '1', progress: false });
      expect(r2.code).toBe(1);
      expect(r2.err).toContain(`baton: --port ${busy} is in use`);
    } finally {
      taken.close();
    }
    expect((await run({ start: true, port: '70000' })).err).toBe(
      'baton: --port must be a whole number 0..65535, got "70000"\n',
    );
  }, 30_000);

  it('exits 1 when the script does not match, 2 on usage errors', async () => {
    const tmp = mkdtempSync(join(tmpdir(), 'baton-script-cli-'));
    try {
      const bad = join(tmp, 'bad.json');
      writeFileSync(bad, JSON.stringify({ ...orderScript, end: { step: 'cancelled' } }));
      const r = await run({ start: true, script: bad, users: '2', progress: false });
      expect(r.out).toContain('verdict: NOT CLEAN');
      expect(r.code).toBe(1);
      const replay = join(tmp, 'replay.json');
      writeFileSync(replay, JSON.stringify({ steps: [{ send: '/replay' }] }));
      expect((await run({ start: true, script: replay })).code).toBe(2);
      expect((await run({ start: true, script: join(tmp, 'nope.json') })).err).toMatch(
        /^baton: cannot read script/,
      );
      expect((await run({ shopStub: true, adminToken: 't' })).err).toBe(
        'baton: --shop-stub needs --start (a Baton already running has its own ORDER_API_URL)\n',
      );
      // The shipped order-status script names the shop stub for an embedded Baton it starts; a
      // Baton already running has its own shop, so the script is taken as it is.
      const remote = await run({
        url: 'http://127.0.0.1:9',
        adminToken: 't',
        script: resolve(import.meta.dirname, '../../loadgen/scripts/order-status.json'),
        users: '1',
        timeout: '200',
        progress: false,
      });
      expect(remote.err).not.toContain('--shop-stub');
      expect(remote.code).not.toBe(2);
      const ghost = join(tmp, 'ghost.json');
      writeFileSync(ghost, JSON.stringify({ steps: [{ send: 'hi' }], end: { step: 'ghost_step' } }));
      const g = await run({ start: true, script: ghost, progress: false });
      expect(g.code).toBe(2);
      expect(g.err).toContain('the script ends at step "ghost_step", which no flow of BATON_FLOWS has');
      // Against a running Baton, --flow still checks the script before any load is sent.
      const order = resolve(import.meta.dirname, '../../src/bots/order.ts');
      const h = await run({ url: 'http://127.0.0.1:9', adminToken: 't', flow: order, script: ghost });
      expect(h.code).toBe(2);
      expect(h.err).toContain(`the script ends at step "ghost_step", which no flow of ${order} has`);
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  }, 30_000);
});

describe('shop stub', () => {
  it('answers lookups and cancels as SPEC 5b describes, and counts cancel effects by key', async () => {
    const shop = await startShopStub();
    try {
      const get = (n: string) =>
        fetch(`${shop.url}/orders/${n}`, { headers: { 'idempotency-key': `k-${n}` } });
      const cancel = (n: string, key: string) =>
        fetch(`${shop.url}/orders/${n}/cancel`, { method: 'POST', headers: { 'idempotency-key': key } });
      expect((await get('ORD-40412')).status).toBe(404);
      const shipped = await get('ORD-12341');
      expect(await shipped.json()).toMatchObject({
        number: 'ORD-12341',
        status: 'shipped',
        map_url: expect.stringMatching(/^https:/),
      });
      expect(await (await get('ORD-12342')).json()).toMatchObject({ status: 'processing' });
      expect((await cancel('ORD-12341', 'a')).status).toBe(409);
      expect(await (await cancel('ORD-12342', 'b')).json()).toEqual({
        number: 'ORD-12342',
        status: 'cancelled',
      });
      expect((await cancel('ORD-12342', 'b')).status).toBe(200);
      expect(await (await get('ORD-12342')).json()).toMatchObject({ status: 'cancelled' });
      expect(shop.stats()).toEqual({ lookups: 4, cancels: 2, withoutKey: 0, ordersCancelledTwice: [] });
      await cancel('ORD-12342', 'c');
      expect(shop.stats().ordersCancelledTwice).toEqual(['ORD-12342']);
    } finally {
      await shop.close();
    }
  });
});
