/**
 * How a step's choices ride on its prompt, in the corners an outside author found (B10, B11,
 * B24): computed choices that come back empty, a media header on more than 3 choices, and a
 * `list()` prompt that names its own button.
 */
import { describe, expect, it } from 'vitest';
import { defineFlow } from '../../src/flow/define.ts';
import { buttons, list } from '../../src/flow/replies.ts';
import { testFlow } from '../../src/testing/test-flow.ts';
import { buildCloudApiMessage } from '../../src/providers/cloud-api/send.ts';
import { outbound } from '../providers/outbound.ts';
import { metaSendSchema } from '../support/meta-send-schema.ts';

const rows = (n: number) => Array.from({ length: n }, (_, i) => ({ id: `r${i}`, title: `Row ${i}` }));

describe('choices on a prompt', () => {
  it('computed choices that come back empty are a reply error, not a prompt with nothing to tap', async () => {
    const f = defineFlow({
      id: 'slots',
      start: 'pick',
      steps: {
        pick: {
          say: 'These are the free slots:',
          choices: (d) => ((d.slots as string[] | undefined) ?? []).map((s) => ({ id: s, title: s })),
          to: ['pick'],
          on: (_i, c) => c.goto('pick'),
        },
      },
    });
    await expect(testFlow(f).send('hi')).rejects.toThrow(
      /^flow slots, step pick: its choices came back empty: the prompt would offer nothing to tap/,
    );
  });

  it('a media header over more than 3 choices goes just before the list, as its own message', async () => {
    const header = { type: 'image' as const, link: 'https://x.example/team.png' };
    const f = (n: number) =>
      defineFlow({
        id: 'doctors',
        start: 'pick',
        steps: {
          pick: {
            say: buttons('Pick a doctor', [], { header, footer: 'F' }),
            choices: rows(n),
            listButton: 'Doctors',
            to: ['pick'],
            on: (_i, c) => c.goto('pick'),
          },
        },
      });
    const five = await testFlow(f(5)).send('hi');
    expect(five.map((r) => r.body.type)).toEqual(['image', 'list']);
    expect(five[0]!.body).toEqual(header);
    expect(five[1]!.body).toMatchObject({ text: 'Pick a doctor', footer: 'F' });
    const two = await testFlow(f(2)).send('hi');
    expect(two.map((r) => r.body.type)).toEqual(['buttons']);
    expect(two[0]!.body).toMatchObject({ header });
    const meta = metaSendSchema();
    for (const r of [...five, ...two])
      expect(meta.errors(buildCloudApiMessage(outbound(r.body)))).toEqual([]);
  });

  it('a list() prompt names its own button: no listButton needed', async () => {
    const f = defineFlow({
      id: 'services',
      start: 'pick',
      steps: {
        pick: {
          say: list('Which service?', 'Services', []),
          choices: rows(5),
          to: ['pick'],
          on: (_i, c) => c.goto('pick'),
        },
      },
    });
    const [prompt] = await testFlow(f).send('hi');
    expect(prompt!.body).toMatchObject({ type: 'list', button: 'Services' });
    expect(() =>
      defineFlow({
        id: 'services',
        start: 'pick',
        steps: { pick: { say: 'Which?', choices: rows(5), to: ['pick'], on: (_i, c) => c.goto('pick') } },
      }),
    ).toThrow(/more than 3 choices need a listButton label/);
  });
  it("a list() prompt's own sections are kept: its rows are the step's choices (outside test QA4-M2)", async () => {
    const drinks = [
      { title: 'Coffee', rows: rows(4) },
      { title: 'Other', rows: [{ id: 'tea', title: 'Tea', description: 'Green or black' }] },
    ];
    const choices = [...rows(4), { id: 'tea', title: 'Tea' }];
    const make = (sections: typeof drinks): ReturnType<typeof defineFlow> =>
      defineFlow({
        id: 'cafe',
        start: 'pick',
        steps: {
          pick: {
            say: list('Pick your drink', 'Drinks', sections, { footer: 'Made to order' }),
            choices,
            to: ['pick'],
            on: (_i, c) => c.goto('pick'),
          },
        },
      });
    const [kept] = await testFlow(make(drinks)).send('hi');
    expect(kept!.body).toEqual({
      type: 'list',
      text: 'Pick your drink',
      button: 'Drinks',
      footer: 'Made to order',
      sections: [
        { title: 'Coffee', rows: rows(4) },
        { title: 'Other', rows: [{ id: 'tea', title: 'Tea', description: 'Green or black' }] },
      ],
    });
    // Meta takes it as it is.
    expect(metaSendSchema().errors(buildCloudApiMessage(outbound(kept!.body)))).toEqual([]);
  });

  it('a list() prompt stays a list over 3 choices or fewer, its descriptions shown (outside test QA22-F1)', async () => {
    const specialities = [
      { id: 'cardiology', title: 'Cardiology', description: 'Heart and blood vessels' },
      { id: 'dermatology', title: 'Dermatology', description: 'Skin, hair and nails' },
      { id: 'pediatrics', title: 'Pediatrics', description: 'Children up to 16' },
    ];
    const f = defineFlow({
      id: 'clinic',
      start: 'pick',
      steps: {
        pick: {
          say: list('Which speciality do you need?', 'Specialities', [
            { title: 'Specialities', rows: specialities },
          ]),
          choices: specialities,
          to: ['pick'],
          on: (_i, c) => c.goto('pick'),
        },
      },
    });
    const [prompt] = await testFlow(f).send('hi');
    expect(prompt!.body).toEqual({
      type: 'list',
      text: 'Which speciality do you need?',
      button: 'Specialities',
      sections: [{ title: 'Specialities', rows: specialities }],
    });
    expect(metaSendSchema().errors(buildCloudApiMessage(outbound(prompt!.body)))).toEqual([]);
    // Its choice comes back as a list reply and is taken.
    const t = testFlow(f);
    await t.send('hi');
    await t.tap('dermatology');
    expect(t.step).toBe('pick');
  });

  it('choices with a description go in a list, which shows it, however few (outside test QA103-F13)', async () => {
    const f = defineFlow({
      id: 'slots',
      start: 'pick',
      steps: {
        pick: {
          say: 'Free slots:',
          choices: () => [
            { id: 's1', title: 'Mon 09:00', description: 'Dr. Costa' },
            { id: 's2', title: 'Mon 10:00', description: 'Dr. Lima' },
          ],
          listButton: 'Slots',
          to: ['pick'],
          on: (_i, c) => c.goto('pick'),
        },
      },
    });
    const [prompt] = await testFlow(f).send('hi');
    expect(prompt!.body).toMatchObject({
      type: 'list',
      button: 'Slots',
      sections: [{ rows: [{ id: 's1', title: 'Mon 09:00', description: 'Dr. Costa' }, { id: 's2' }] }],
    });
    expect(metaSendSchema().errors(buildCloudApiMessage(outbound(prompt!.body)))).toEqual([]);
    const plain = defineFlow({
      id: 'plain',
      start: 'pick',
      steps: {
        pick: { say: 'Pick', choices: rows(2), to: ['pick'], on: (_i, c) => c.goto('pick') },
      },
    });
    expect((await testFlow(plain).send('hi'))[0]!.body.type).toBe('buttons');
  });
});
