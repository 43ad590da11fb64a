/**
 * A step whose prompt is a template (the only message WhatsApp delivers more than 24 hours after
 * the user last wrote) offers its choices on the template's quick replies: nothing else is sent
 * (a free-form "Choose" message after it fails with 131047 outside the window: outside test B3).
 */
import { describe, expect, it } from 'vitest';
import { defineFlow, type FlowSpec } from '../../src/flow/define.ts';
import { template } from '../../src/flow/replies.ts';
import { testFlow } from '../../src/testing/test-flow.ts';

type Step = 'menu' | 'reminder' | 'attending' | 'cancelled';

const spec = (say: FlowSpec<Step>['steps']['reminder']['say']): FlowSpec<Step> => ({
  id: 'clinic',
  start: 'menu',
  steps: {
    menu: { say: 'Hello', accepts: 'any', to: ['menu'], on: (_i, c) => c.goto('menu') },
    reminder: {
      say,
      choices: [
        { id: 'attend', title: 'I will attend' },
        { id: 'cancel_appt', title: 'Cancel it' },
      ],
      to: ['attending', 'cancelled'],
      on: (i, c) => (i.type === 'choice' && i.id === 'attend' ? c.goto('attending') : c.goto('cancelled')),
    },
    attending: { say: 'See you then', accepts: 'any', to: ['menu'], on: (_i, c) => c.goto('menu') },
    cancelled: { say: 'Cancelled', accepts: 'any', to: ['menu'], on: (_i, c) => c.goto('menu') },
  },
  events: { remind: { to: ['reminder'], on: (_p, c) => c.goto('reminder') } },
});

const withQuickReplies = template('appointment_reminder', 'en', { quickReplies: ['attend', 'cancel_appt'] });

describe('a template prompt with choices', () => {
  it('sends the template alone: its quick replies carry the choices, and a tap on one is taken', async () => {
    const t = testFlow(defineFlow(spec(withQuickReplies)));
    await t.send('hi');
    const sent = await t.event('remind');
    expect(sent.map((r) => r.body.type)).toEqual(['template']);
    expect(t.step).toBe('reminder');
    await t.tap('cancel_appt');
    expect(t.step).toBe('cancelled');
  });

  it('numbers its choices under the text a gateway without templates sends (outside test QA35-F7)', async () => {
    const withText = template('appointment_reminder', 'en', {
      quickReplies: ['attend', 'cancel_appt'],
      text: 'Your appointment is tomorrow at 10.',
    });
    const t = testFlow(defineFlow(spec(withText)));
    await t.send('hi');
    const [sent] = await t.event('remind');
    expect(sent!.body).toMatchObject({
      type: 'template',
      text: 'Your appointment is tomorrow at 10.\n\n1. I will attend\n2. Cancel it',
    });
    // Without a text (Cloud API only), the template is left as given.
    const t2 = testFlow(defineFlow(spec(withQuickReplies)));
    await t2.send('hi');
    expect((await t2.event('remind'))[0]!.body).toEqual(withQuickReplies);
  });

  it('a retry sends the template again, alone', async () => {
    const t = testFlow(defineFlow(spec(withQuickReplies)));
    await t.send('hi');
    await t.event('remind');
    expect((await t.send('what?')).map((r) => r.body.type)).toEqual(['template']);
  });

  it('refuses quick replies that are not the choices: at load, or when a computed prompt is built', async () => {
    const other = template('appointment_reminder', 'en', { quickReplies: ['yes', 'no'] });
    expect(() => defineFlow(spec(other))).toThrow(
      /step "reminder": its template's quick replies \(yes, no\) are not its choices \(attend, cancel_appt\)/,
    );
    const t = testFlow(defineFlow(spec(() => other)));
    await t.send('hi');
    await expect(t.event('remind')).rejects.toThrow(
      /^flow clinic, step reminder: .*its template's quick replies \(yes, no\) are not its choices/,
    );
  });

  it('without quick replies, the choices still follow the template (inside the 24-hour window)', async () => {
    const t = testFlow(defineFlow(spec(template('appointment_reminder', 'en'))));
    await t.send('hi');
    expect((await t.event('remind')).map((r) => r.body.type)).toEqual(['template', 'buttons']);
  });
});
