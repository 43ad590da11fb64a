/**
 * A shop flow with events (the flow's `events`), shared by the unit and end-to-end event tests:
 * `order_shipped` leads to `tracking` (not while the user gives their name), `fraud_flag` hands
 * off, and a few that break the rules.
 */
import { z } from 'zod';
import type { FlowSpec } from '../../src/flow/define.ts';
import { buttons } from '../../src/index.ts';

export type Step = 'ask_name' | 'menu' | 'tracking' | 'shipped_only';
export type Data = { name?: string; order?: string; status?: string };

export const eventsSpec: FlowSpec<Step, Data> = {
  id: 'shop',
  data: z.object({
    name: z.string().optional(),
    order: z.string().optional(),
    status: z.string().optional(),
  }),
  start: 'ask_name',
  steps: {
    ask_name: {
      say: 'Your name?',
      accepts: 'text',
      to: ['menu'],
      on: (i, c) => (i.type === 'text' ? c.goto('menu', { name: i.text }) : c.retry()),
    },
    menu: {
      say: (d) => `Hi ${d.name ?? 'there'}, what now?`,
      choices: [{ id: 'human', title: 'A person' }],
      to: ['menu'],
      on: (_i, c) => c.handoff('asked for a person'),
    },
    tracking: {
      say: (d) => buttons(`Order ${d.order ?? '?'} is ${d.status ?? '?'}.`, []),
      choices: [{ id: 'ok', title: 'OK' }],
      to: ['menu'],
      on: (_i, c) => c.goto('menu'),
    },
    // Reached only by an event.
    shipped_only: { say: 'Shipped.', accepts: 'any', to: ['menu'], on: (_i, c) => c.goto('menu') },
  },
  events: {
    order_shipped: {
      to: ['tracking'],
      payload: z.object({ order: z.string().regex(/^ORD-\d+$/) }),
      // Not while the user is still giving their name.
      on: (p: { order: string }, c) =>
        c.step === 'ask_name' ? undefined : c.goto('tracking', { order: p.order, status: 'shipped' }),
    },
    // The payload as its schema reads it: an amount posted as text reaches `on` as a number.
    refunded: {
      to: ['tracking'],
      payload: z.object({ order: z.string(), amount: z.coerce.number() }),
      on: (p: { order: string; amount: number }, c) =>
        c.goto('tracking', { order: p.order, status: `refunded ${p.amount.toFixed(2)}` }),
    },
    fraud_flag: { to: [], on: (_p, c) => c.handoff('fraud check') },
    wrong_way: { to: ['tracking'], on: (_p, c) => c.goto('menu') },
    retrying: { to: ['menu'], on: (_p, c) => (c as unknown as { retry(): never }).retry() },
    quiet: { to: ['shipped_only'], on: (_p, c) => c.goto('shipped_only') },
  },
};
