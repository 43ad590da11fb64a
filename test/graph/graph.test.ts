import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { XMLParser, XMLValidator } from 'fast-xml-parser';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { createBaton } from '../../src/app.ts';
import { orderFlow } from '../../src/bots/order.ts';
import { loadConfig } from '../../src/config/index.ts';
import { run } from '../../src/cli/index.ts';
import { defineFlow, type FlowSpec } from '../../src/flow/define.ts';
import { flowGraph, flowMermaid, renderFlowSvg } from '../../src/graph/index.ts';
import { document, image } from '../../src/flow/replies.ts';
import { eventsSpec } from '../support/event-flow.ts';

interface XmlNode {
  [key: string]: unknown;
}

/** Parses strictly (throws on any well-formedness error) and returns the tree. */
function parseSvg(svg: string): XmlNode {
  const valid = XMLValidator.validate(svg);
  if (valid !== true) throw new Error(`SVG is not well-formed: ${JSON.stringify(valid.err)}`);
  return new XMLParser({ ignoreAttributes: false, attributeNamePrefix: '@', preserveOrder: false }).parse(
    svg,
  ) as XmlNode;
}

/** Every element named `name` anywhere in the tree. */
function all(tree: unknown, name: string): XmlNode[] {
  const found: XmlNode[] = [];
  const walk = (n: unknown): void => {
    if (Array.isArray(n)) return n.forEach(walk);
    if (n === null || typeof n !== 'object') return;
    for (const [k, v] of Object.entries(n as XmlNode)) {
      if (k === name) for (const x of Array.isArray(v) ? v : [v]) found.push(x as XmlNode);
      walk(v);
    }
  };
  walk(tree);
  return found;
}

const stepNodes = (tree: XmlNode): XmlNode[] =>
  all(tree, 'g').filter((g) => (typeof g['@class'] === 'string' ? g['@class'] : '').split(' ')[0] === 'node');

describe('flowGraph', () => {
  it('reads the reference bot: start, terminal steps and edges labelled by input', () => {
    const g = flowGraph(orderFlow);
    expect(g.nodes.map((n) => n.id)).toEqual([...orderFlow.steps.keys()]);
    expect(g.nodes.filter((n) => n.start).map((n) => n.id)).toEqual(['ask_name']);
    expect(g.nodes.filter((n) => n.terminal).map((n) => n.id)).toEqual(['completed', 'cancelled']);
    const label = (from: string, to: string): string | undefined =>
      g.edges.find((e) => e.from === from && e.to === to)?.label;
    expect(label('ask_name', 'choose_product')).toBe('text');
    expect(label('choose_product', 'collect_shipping_address')).toBe('Trail Shoe / Rain Jacket / Day Pack');
    expect(label('confirm_order', 'completed')).toBe('Confirm');
    expect(label('confirm_order', 'cancelled')).toBe('Cancel');
    expect(g.edges.find((e) => e.from === 'completed')).toMatchObject({
      to: 'ask_name',
      label: 'any',
      restart: true,
    });
    expect(g.edges).toHaveLength([...orderFlow.steps.values()].reduce((n, s) => n + s.to.length, 0));
  });

  it('falls back to "choice" when a handler cannot be probed', () => {
    const flow = defineFlow({
      id: 'probe',
      start: 'pick',
      steps: {
        pick: {
          say: 'Pick',
          choices: [{ id: 'a', title: 'A' }],
          to: ['end'],
          on: (_i, c) => {
            if (c.data.ready !== true) throw new Error('needs data');
            return c.goto('end');
          },
        },
        end: { say: 'Bye', accepts: 'any', to: [], on: (_i, c) => c.retry() },
      },
    });
    const g = flowGraph(flow);
    expect(g.edges).toEqual([{ from: 'pick', to: 'end', label: 'choice', restart: false }]);
    expect(g.nodes.find((n) => n.id === 'end')?.terminal).toBe(true);
    expect(g.nodes.find((n) => n.id === 'pick')?.terminal).toBe(false);
    expect(g.hints).toEqual([]); // a handler that cannot be probed is no mistake of its own
  });

  it('hints at a choice id misspelt in "on": no choice leads to a step "to" lists (outside test QA22-F2)', async () => {
    const flow = slotsTypo(['pick', 'booked']);
    expect(flowGraph(flow).hints).toEqual([
      'step "pick": none of its choices leads to "pick" (asked with each choice id and empty data): a misspelt choice id in its "on"?',
      'step "pick": none of its choices leads to "booked" (asked with each choice id and empty data): a misspelt choice id in its "on"?',
    ]);
    // The reference bot has none.
    expect(flowGraph(orderFlow).hints).toEqual([]);
  });

  it('is said at start where the flow runs, not only by `baton flow graph` (outside test QA41-F3)', async () => {
    const typo = slotsTypo(['pick']);
    const warned: unknown[] = [];
    const logger = pino({ level: 'warn' }, { write: (line: string) => void warned.push(JSON.parse(line)) });
    const dir = mkdtempSync(join(tmpdir(), 'baton-hints-'));
    const baton = await createBaton(loadConfig({ PORT: '0', HOST: '127.0.0.1', BATON_DATA_DIR: dir }), {
      flows: [typo, orderFlow],
      logger,
    });
    try {
      expect(warned.filter((l) => (l as { flow?: string }).flow !== undefined)).toEqual([
        expect.objectContaining({
          flow: 'slots',
          msg: 'flow slots: step "pick": none of its choices leads to "pick" (asked with each choice id and empty data): a misspelt choice id in its "on"?',
        }),
      ]);
    } finally {
      await baton.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("labels the start step's `first` jumps 'first message', and hints at none of them (outside test QA101-F3, QA103-F7)", () => {
    const flow = defineFlow({
      id: 'repairs',
      start: 'menu',
      steps: {
        menu: {
          say: 'What do you need?',
          choices: [
            { id: 'book', title: 'Book a repair' },
            { id: 'status', title: 'Repair status' },
          ],
          to: ['booking', 'status', 'lookup'],
          on: (i, c) => c.goto(i.type === 'choice' && i.id === 'book' ? 'booking' : 'status'),
          // A new user who opens with their ticket number skips the menu.
          first: (i, c) => (i.type === 'text' && /^R-\d+$/.test(i.text) ? c.goto('lookup') : c.retry()),
        },
        booking: { say: 'Which bike?', to: ['menu'], on: (_i, c) => c.goto('menu') },
        status: { say: 'Ticket?', to: ['lookup'], on: (_i, c) => c.goto('lookup') },
        lookup: { say: 'Looking', accepts: 'any', to: ['menu'], on: (_i, c) => c.goto('menu') },
      },
    });
    const g = flowGraph(flow);
    expect(g.hints).toEqual([]);
    expect(g.edges.filter((e) => e.from === 'menu')).toEqual([
      { from: 'menu', to: 'booking', label: 'Book a repair', restart: false },
      { from: 'menu', to: 'status', label: 'Repair status', restart: false },
      // `first` jumps there on a ticket number, which the probe did not type: by `first` or by a
      // choice on data, the probe cannot tell.
      { from: 'menu', to: 'lookup', label: 'choice / first message', restart: false },
    ]);
    // A `first` that jumps on any text is seen doing so.
    const eager = defineFlow({
      id: 'eager',
      start: 'menu',
      steps: {
        menu: {
          say: 'Pick',
          choices: [{ id: 'a', title: 'A' }],
          to: ['a', 'b'],
          on: (_i, c) => c.goto('a'),
          first: (_i, c) => c.goto('b'),
        },
        a: { say: 'A', to: ['menu'], on: (_i, c) => c.goto('menu') },
        b: { say: 'B', to: ['menu'], on: (_i, c) => c.goto('menu') },
      },
    });
    expect(
      flowGraph(eager)
        .edges.filter((e) => e.from === 'menu')
        .map((e) => e.label),
    ).toEqual(['A', 'first message']);
  });

  it('no hint for choices made from data, which are none with empty data (outside test QA41-F6)', async () => {
    const flow = defineFlow({
      id: 'clinic',
      start: 'pick',
      steps: {
        pick: {
          say: 'Which slot?',
          choices: (d) =>
            (typeof d.slots === 'string' ? d.slots.split(',') : []).map((id) => ({ id, title: id })),
          to: ['booked'],
          on: (i, c) => c.goto('booked', { slot: i.type === 'choice' ? i.id : '' }),
        },
        booked: { say: 'Booked', accepts: 'any', to: [], on: (_i, c) => c.startOver() },
      },
    });
    expect(flowGraph(flow).hints).toEqual([]);
  });

  it("a start over is a dashed edge to the start step, whatever the step's `to` names (outside test QA105-F1)", () => {
    const flow = defineFlow({
      id: 'booking',
      start: 'ask_name',
      events: { paid: { to: ['booked'], on: (_p, c) => c.goto('booked') } },
      steps: {
        ask_name: {
          say: 'Name?',
          accepts: 'text',
          to: ['booked', 'thanks'],
          on: (_i, c) => c.goto('booked'),
        },
        // `to` names itself only; every message starts over.
        booked: { say: 'Booked', accepts: 'any', to: ['booked'], on: (_i, c) => c.startOver() },
        thanks: { say: 'Thanks', accepts: 'any', to: [], on: (_i, c) => c.startOver() },
      },
    });
    const g = flowGraph(flow);
    expect(g.edges.filter((e) => e.from !== 'ask_name')).toEqual([
      { from: 'booked', to: 'booked', label: 'any', restart: false },
      { from: 'booked', to: 'ask_name', label: 'any', restart: true },
      { from: 'thanks', to: 'ask_name', label: 'any', restart: true },
    ]);
    expect(g.nodes.filter((n) => n.terminal).map((n) => n.id)).toEqual(['thanks']);
    expect(flowMermaid(flow)).toContain('  booked --> ask_name: any (restart)\n');
  });
});

describe('renderFlowSvg', () => {
  it('is well-formed with one node per step of the reference bot', () => {
    const tree = parseSvg(renderFlowSvg(orderFlow));
    const nodes = stepNodes(tree);
    expect(nodes.map((n) => n['@data-step']).sort()).toEqual([...orderFlow.steps.keys()].sort());
    expect(nodes.find((n) => n['@data-step'] === 'ask_name')?.['@class']).toContain('start');
    expect(nodes.find((n) => n['@data-step'] === 'completed')?.['@class']).toContain('terminal');
    expect(
      all(tree, 'g').filter((g) => g['@class'] === 'edge' || g['@class'] === 'edge restart'),
    ).toHaveLength(7);
  });

  it('escapes every text and refers to nothing outside the file', () => {
    const flow = defineFlow({
      id: 'nasty',
      start: 'ask',
      steps: {
        ask: {
          say: 'x',
          choices: [
            { id: 'lt', title: '<b>&"quoted"\'' },
            { id: 'ctl', title: 'bell\u0007]]>' },
          ],
          to: ['done'],
          on: (_i, c) => c.goto('done'),
        },
        done: { say: 'y', accepts: 'any', to: ['ask'], on: (_i, c) => c.restart('ask') },
      },
    });
    const svg = renderFlowSvg(flow, {
      counts: { ask: { sessions: 2, oldestMs: 90_000 } },
      href: (s) => `/admin/sessions?step=${s}&x="1"`,
    });
    const tree = parseSvg(svg);
    expect(svg).not.toContain('<b>');
    expect(svg).toContain('&#60;b&#62;&#38;&#34;quoted&#34;&#39;');
    expect(svg).not.toContain('\u0007');
    expect(all(tree, 'a')).toHaveLength(2);
    expect(svg).toContain('<a href="/admin/sessions?step=ask&#38;x=&#34;1&#34;">');
    // Only the SVG namespace is a URL; no images, scripts, styles or fonts from elsewhere.
    expect(svg.match(/https?:\/\//g)).toEqual(['http://']);
    expect(svg).not.toMatch(/<(image|script|style|foreignObject|use)\b|xlink:href|@import|url\((?!#)/);
    expect(svg).toContain('2 sessions · oldest 1m');
  });

  it('shows live counts per step', () => {
    const tree = parseSvg(
      renderFlowSvg(orderFlow, { counts: { confirm_order: { sessions: 1 }, ask_name: { sessions: 0 } } }),
    );
    const counts = all(tree, 'text').filter((t) => t['@class'] === 'count');
    expect(counts.map((t) => t['#text'])).toEqual(['0 sessions', '1 session']);
  });
});

describe('flowMermaid and baton flow graph', () => {
  it('labels Mermaid edges by input and marks terminal steps', () => {
    const m = flowMermaid(orderFlow);
    expect(m).toContain('confirm_order --> completed: Confirm');
    expect(m).toContain('completed --> [*]');
  });

  it("keeps a label's colons, semicolons and quotes (Mermaid entity codes), one line", () => {
    const flow = defineFlow({
      id: 'slots',
      start: 'pick',
      steps: {
        pick: {
          say: 'When?',
          choices: [{ id: 'six', title: '18:00; "late"' }],
          to: ['end'],
          on: (_i, c) => c.goto('end'),
        },
        end: { say: 'Booked', accepts: 'any', to: [], on: (_i, c) => c.retry() },
      },
    });
    const edge = flowMermaid(flow)
      .split('\n')
      .find((l) => l.startsWith('  pick --> end: '));
    expect(edge).toBe('  pick --> end: 18#58;00#59; #quot;late#quot;');
  });

  it("draws a flow's events: a node of their own, edges to the steps each may lead to", () => {
    // A step named like an event's node takes nothing from it.
    const flow = defineFlow({
      ...eventsSpec,
      steps: {
        ...eventsSpec.steps,
        menu: { ...eventsSpec.steps.menu, to: ['menu', 'event_quiet' as never] },
        event_quiet: { say: 'x', accepts: 'any', to: [], on: () => ({ kind: 'retry' as const }) },
      },
    } as typeof eventsSpec);
    const g = flowGraph(flow);
    expect(g.events).toEqual([
      { name: 'order_shipped', to: ['tracking'], handoff: false },
      { name: 'refunded', to: ['tracking'], handoff: false },
      { name: 'fraud_flag', to: [], handoff: true },
      { name: 'wrong_way', to: ['tracking'], handoff: false },
      { name: 'retrying', to: ['menu'], handoff: false },
      { name: 'quiet', to: ['shipped_only'], handoff: false },
    ]);
    // Events are not steps: no step edge starts at one, and no step becomes an end for them.
    expect(g.edges.some((e) => e.from.startsWith('event_'))).toBe(false);

    const m = flowMermaid(flow).split('\n');
    expect(m).toContain('  state "order_shipped (event)" as event_order_shipped');
    expect(m).toContain('  event_order_shipped --> tracking: event');
    expect(m).toContain('  note right of event_fraud_flag: hand-off');
    expect(m).toContain('  state "quiet (event)" as event_quiet_');
    expect(m).toContain('  event_quiet_ --> shipped_only: event');

    const tree = parseSvg(renderFlowSvg(flow));
    expect(stepNodes(tree).map((n) => n['@data-step'])).toEqual([...flow.steps.keys()]);
    const events = all(tree, 'g').filter((n) => n['@class'] === 'event');
    expect(events.map((n) => n['@data-event'])).toEqual([...flow.events.keys()]);
    const edges = all(tree, 'g').filter((n) => n['@class'] === 'edge event');
    expect(edges.map((n) => `${String(n['@data-event'])}>${String(n['@data-to'])}`)).toEqual([
      'order_shipped>tracking',
      'refunded>tracking',
      'wrong_way>tracking',
      'retrying>menu',
      'quiet>shipped_only',
    ]);
  });

  it('writes the SVG from the CLI', async () => {
    const out: string[] = [];
    expect(await run(['flow', 'graph', 'order', '--format', 'svg'], (s) => out.push(s))).toBe(0);
    expect(stepNodes(parseSvg(out.join('\n')))).toHaveLength(orderFlow.steps.size);
    const file = join(mkdtempSync(join(tmpdir(), 'baton-graph-')), 'order.mmd');
    expect(await run(['flow', 'graph', 'order', '--output', file], () => undefined)).toBe(0);
    expect(readFileSync(file, 'utf8')).toContain('[*] --> ask_name');
  });
});

const EXAMPLE = resolve(import.meta.dirname, '../../examples/order-status/flow.ts');

describe.skipIf(!existsSync(EXAMPLE))('the order-status example', () => {
  it('draws one node per step, its effect steps and hand-offs marked', async () => {
    const { orderStatusFlow } = (await import(EXAMPLE)) as {
      orderStatusFlow: (o: { apiUrl: string }) => Parameters<typeof renderFlowSvg>[0];
    };
    const flow = orderStatusFlow({ apiUrl: 'http://127.0.0.1:9' });
    const tree = parseSvg(renderFlowSvg(flow));
    const nodes = stepNodes(tree);
    expect(nodes.map((n) => n['@data-step']).sort()).toEqual([...flow.steps.keys()].sort());
    const classOf = (id: string): string => String(nodes.find((n) => n['@data-step'] === id)?.['@class']);
    expect(classOf('looking_up')).toContain('effect');
    expect(classOf('cancelling')).toContain('effect');
    expect(classOf('show_status')).toContain('handoff');
    expect(classOf('ask_order')).toContain('start');
    const g = flowGraph(flow);
    expect(
      g.nodes
        .filter((n) => n.effect)
        .map((n) => n.id)
        .sort(),
    ).toEqual(['cancelling', 'looking_up']);
    expect(
      g.nodes
        .filter((n) => n.handoff)
        .map((n) => n.id)
        .sort(),
    ).toEqual(['lookup_failed', 'show_status', 'tracking']);
    expect(g.edges.find((e) => e.from === 'confirm_cancel' && e.to === 'cancelling')?.label).toBe(
      'Yes, cancel it',
    );
  });
});

/**
 * A flow whose "on" misspells its choice id `retry_slots` (`retry_slotz`), leading to `to`: built
 * at run time, so typed as such a flow is (`FlowSpec<string>`).
 */
function slotsTypo(to: string[]) {
  const spec: FlowSpec<string> = {
    id: 'slots',
    start: 'pick',
    steps: {
      pick: {
        say: 'No slot free.',
        choices: [
          { id: 'retry_slots', title: 'Try again' },
          { id: 'human', title: 'A person' },
        ],
        to,
        on: (i, c) => (i.type === 'choice' && i.id === 'retry_slotz' ? c.goto('pick') : c.handoff('asked')),
      },
      ...(to.includes('booked')
        ? { booked: { say: 'Booked', accepts: 'any' as const, to: [], on: (_i, c) => c.startOver() } }
        : {}),
    },
  };
  return defineFlow(spec);
}

describe('hints on replies WhatsApp takes that still go wrong (outside test QA103-F5)', () => {
  it('a media link on this machine or a private network, and a document without a file name', () => {
    const flow = defineFlow({
      id: 'media_hints',
      start: 'a',
      steps: {
        a: {
          say: [
            image('http://localhost:8080/menu.png'),
            image('https://192.168.1.20/menu.png'),
            image('https://[::1]/menu.png'),
            image('https://cdn.example.com/menu.png'),
            document('https://cdn.example.com/menu.pdf'),
            document('https://cdn.example.com/menu.pdf', { filename: 'menu.pdf' }),
            'Pick one',
          ],
          accepts: 'any',
          to: [],
          on: (_i, c) => c.startOver(),
        },
      },
    });
    expect(flowGraph(flow).hints).toEqual([
      `step "a": image link on http://localhost:8080 is on this machine or a private network: Meta's servers fetch media links and cannot reach it (the simulator can)`,
      `step "a": image link on https://192.168.1.20 is on this machine or a private network: Meta's servers fetch media links and cannot reach it (the simulator can)`,
      `step "a": image link on https://[::1] is on this machine or a private network: Meta's servers fetch media links and cannot reach it (the simulator can)`,
      'step "a": document has no filename: the user sees the file unnamed',
    ]);
  });

  it('none for the examples, whose links are public', () => {
    expect(flowGraph(orderFlow).hints).toEqual([]);
  });
});
