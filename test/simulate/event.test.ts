/**
 * `/event` in the simulator: a bot author tries their flow's events from the terminal, posted to
 * the admin API's events route of a real Baton, and sees the bot speak first.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defineFlow } from '../../src/flow/define.ts';
import { startFakeGraphApi, type FakeGraphApi } from '../../src/simulate/fake-graph.ts';
import { runScript } from '../../src/simulate/script.ts';
import { eventParts, Simulator, type BotReply } from '../../src/simulate/simulator.ts';
import { eventsSpec } from '../support/event-flow.ts';
import { startEmbeddedTarget } from '../support/embedded-target.ts';

const SECRET = 'sim-event-secret';
const TOKEN = 'sim-event-admin';
let graph: FakeGraphApi;
let target: Awaited<ReturnType<typeof startEmbeddedTarget>>;
let url: string;

beforeAll(async () => {
  graph = await startFakeGraphApi();
  target = await startEmbeddedTarget(
    SECRET,
    graph.url,
    { ADMIN_TOKEN: TOKEN, BATON_BUFFER_MS: '50' },
    { flows: [defineFlow(eventsSpec)] },
  );
  url = target.url;
});

afterAll(async () => {
  await target?.stop();
  await graph?.close();
});

describe('/event in the simulator', () => {
  it('posts the event for the current user, and the prompt it leads to comes back', async () => {
    const sim = new Simulator({ url, graph, secret: SECRET, adminToken: TOKEN, firstUser: '15550730001' });
    const replies: BotReply[] = [];
    sim.onReply((r) => replies.push(r));
    try {
      const posted = await sim.handleLine('/event order_shipped {"order":"ORD-42"}');
      expect(posted).toMatchObject({ posted: [202], info: ['event stored: applied in turn'] });
      const deadline = Date.now() + 8000;
      while (!replies.some((r) => r.rendered.lines.join(' ').includes('ORD-42')) && Date.now() < deadline)
        await new Promise((r) => setTimeout(r, 25));
      expect(replies.map((r) => r.rendered.lines.join(' ')).join('\n')).toContain('Order ORD-42 is shipped.');
      // Refused by the flow's payload schema: said, nothing posted twice.
      const bad = await sim.handleLine('/event order_shipped {"order":"x"}');
      expect(bad.posted).toEqual([400]);
      expect(bad.info[0]).toMatch(
        /^event refused \(400\): event "order_shipped" of flow shop refuses that payload/,
      );
      const unknown = await sim.handleLine('/event nope');
      expect(unknown.info[0]).toMatch(/event refused \(400\): flow shop has no event "nope"/);
    } finally {
      sim.close();
    }
  });

  it('says an event posted while an agent has the session is held, not applied (outside test QA97-F7)', async () => {
    const sim = new Simulator({ url, graph, secret: SECRET, adminToken: TOKEN, firstUser: '15550730005' });
    try {
      const passed = await runScript(sim, {
        steps: [
          { send: 'hi', expect: ['Your name?'] },
          { send: 'Jane', expect: ['what now?'] },
        ],
      });
      expect(passed).toMatchObject({ ok: true });
      // The menu's one button hands the user to a person.
      await sim.handleLine('1');
      const deadline = Date.now() + 8000;
      for (;;) {
        const r = await fetch(`${url}/admin/api/sessions/15550730005`, {
          headers: { authorization: `Bearer ${TOKEN}` },
        });
        const view = (await r.json()) as { metadata?: { needs_agent?: boolean } };
        if (view.metadata?.needs_agent === true) break;
        if (Date.now() > deadline) throw new Error('never handed to a person');
        await new Promise((res) => setTimeout(res, 50));
      }
      const posted = await sim.handleLine('/event order_shipped {"order":"ORD-43"}');
      expect(posted).toMatchObject({ posted: [202] });
      expect(posted.info[0]).toMatch(
        /^event stored, but an agent has the session: it is recorded held, not applied/,
      );
    } finally {
      sim.close();
    }
  });

  it("a conversation script posts events too: the event's prompt is checked, a refusal fails the step", async () => {
    const sim = new Simulator({ url, graph, secret: SECRET, adminToken: TOKEN, firstUser: '15550730003' });
    try {
      const passed = await runScript(sim, {
        steps: [
          { send: 'hi', expect: ['Your name?'] },
          { send: 'Jane', expect: ['what now?'] },
          { send: '/event order_shipped {"order":"ORD-7"}', expect: ['Order ORD-7 is shipped.'] },
        ],
      });
      expect(passed).toMatchObject({ ok: true, stepsPassed: 3 });
      const refused = await runScript(sim, {
        steps: [{ send: '/event order_shipped {"order":"x"}', expect: ['Order'] }],
      });
      expect(refused.ok).toBe(false);
      expect(refused.failures[0]).toMatch(
        /^step 1 .*: event refused \(400\): event "order_shipped" of flow shop/,
      );
    } finally {
      sim.close();
    }
  });

  it('says what is wrong with a line, and asks for the token when it has none', async () => {
    expect(eventParts('')).toMatch(/^usage: \/event/);
    expect(eventParts('Bad')).toMatch(/^usage: \/event/);
    expect(eventParts('x {nope')).toMatch(/not JSON/);
    expect(eventParts('order_shipped')).toEqual({ name: 'order_shipped', payload: null });
    const sim = new Simulator({ url, graph, secret: SECRET, firstUser: '15550730002' });
    try {
      expect((await sim.handleLine('/event order_shipped')).info).toEqual([
        '/event needs the target\u2019s admin token: set ADMIN_TOKEN',
      ]);
    } finally {
      sim.close();
    }
  });
});
