import { describe, expect, it } from 'vitest';
import { orderFlow } from '../../src/bots/order.ts';
import { FlowDefinitionError } from '../../src/errors.ts';
import {
  defineFlow as defineTypedFlow,
  promptOf,
  promptsOf,
  toMermaid,
  type FlowSpec,
  type StepSpec,
} from '../../src/flow/define.ts';
import { buttons, image, list } from '../../src/flow/replies.ts';

/**
 * What this file checks is the validation at load, on flows of loosely typed steps (as a flow
 * built at run time is typed: `FlowSpec<string>`), which the compiler lets through.
 */
const defineFlow = (spec: FlowSpec<string>) => defineTypedFlow(spec);

const step = (to: string[], extra: Partial<StepSpec<string>> = {}): StepSpec<string> => ({
  say: 'x',
  accepts: 'text',
  to,
  on: (_i, c) => c.retry(),
  ...extra,
});

describe('defineFlow validation', () => {
  it('accepts the reference bot and derives its choice owners', () => {
    expect(orderFlow.choiceOwner.get('sku_550e')).toBe('choose_product');
    expect(orderFlow.choiceOwner.get('confirm')).toBe('confirm_order');
    expect(orderFlow.steps.get('choose_product')!.accepts).toBe('choice');
  });

  it('names the step that goes to an unknown step', () => {
    expect(() => defineFlow({ id: 'f', start: 'a', steps: { a: step(['b']) } })).toThrow(
      /flow "f": step "a": goes to unknown step "b"/,
    );
  });

  it('names the step meant for a misspelt one, as the compiler would (outside test QA138-F4)', () => {
    const steps = { ask_name: step(['ask_dob']), ask_dob: step([]) };
    expect(() =>
      defineFlow({ id: 'f', start: 'ask_name', steps: { ...steps, ask_name: step(['ask_dbo']) } }),
    ).toThrow('flow "f": step "ask_name": goes to unknown step "ask_dbo" (did you mean "ask_dob"?)');
    expect(() => defineFlow({ id: 'f', start: 'ask_nme', steps })).toThrow(
      'start step "ask_nme" is not defined (did you mean "ask_name"?)',
    );
    expect(() => defineFlow({ id: 'f', start: 'ask_name', moved: { gone: 'ask_db' }, steps })).toThrow(
      'moved: "gone" goes to unknown step "ask_db" (did you mean "ask_dob"?)',
    );
    // Nothing close: no guess.
    expect(() =>
      defineFlow({ id: 'f', start: 'ask_name', steps: { ...steps, ask_name: step(['zzz']) } }),
    ).toThrow(/goes to unknown step "zzz"$/);
  });

  it("refuses an effect step without onResult or onFailure at load, not at the API's first failure (outside test QA138-F9)", () => {
    const js = (spec: object): unknown => defineFlow(spec as Parameters<typeof defineFlow>[0]);
    const fetching = (effect: object) => ({
      id: 'f',
      start: 'fetching',
      effects: { fetch_slots: { run: async () => ({}) } },
      steps: { fetching: { say: 'x', to: ['done'], effect }, done: step([]) },
    });
    const onResult = (_r: unknown, c: { goto: (s: string) => unknown }) => c.goto('done');
    expect(() => js(fetching({ use: 'fetch_slots', onResult }))).toThrow(
      'flow "f": step "fetching": its effect needs onFailure (a function each)',
    );
    expect(() => js(fetching({ use: 'fetch_slots', onFailure: 'done' }))).toThrow(
      'its effect needs onResult and onFailure (a function each)',
    );
  });

  it('refuses a misspelt field, naming the one meant (outside test QA22-F3: plain JavaScript flows loaded without a word)', () => {
    const js = (spec: object): unknown => defineFlow(spec as Parameters<typeof defineFlow>[0]);
    expect(() =>
      js({ id: 'f', start: 'a', steps: { a: { ...step([]), choises: [{ id: 'y', title: 'Y' }] } } }),
    ).toThrow(
      /^flow "f": step "a": unknown field "choises" \(did you mean "choices"\?\); known: say, choices,/,
    );
    expect(() => js({ id: 'f', start: 'a', steps: { a: { ...step([]), maxRetry: 2 } } })).toThrow(
      /step "a": unknown field "maxRetry" \(did you mean "maxRetries"\?\)/,
    );
    expect(() => js({ id: 'f', start: 'a', handoffKeyword: ['human'], steps: { a: step([]) } })).toThrow(
      /^flow "f": unknown field "handoffKeyword" \(did you mean "handoffKeywords"\?\)/,
    );
    expect(() => js({ id: 'f', start: 'a', notices: { stail: 'x' }, steps: { a: step([]) } })).toThrow(
      /^flow "f": notices: unknown field "stail" \(did you mean "stale"\?\)/,
    );
    expect(() => js({ id: 'f', start: 'a', colour: 'red', steps: { a: step([]) } })).toThrow(
      /^flow "f": unknown field "colour"; known: id,/,
    );
    // No steps, or a step that is no object (outside test QA51-F4: a bare TypeError).
    expect(() => js({ id: 'f', start: 'a' })).toThrow(
      /^flow "f": needs "steps", an object of step definitions/,
    );
    expect(() => js({ id: 'f', start: 'a', steps: { a: null } })).toThrow(
      /^flow "f": step "a": a step is an object/,
    );
    expect(() => js({ id: 'f', start: 'a', steps: [step([])] })).toThrow(/needs "steps"/);
    // A field left undefined (an options object spread in) is no misspelling.
    expect(() => js({ id: 'f', start: 'a', steps: { a: { ...step([]), extra: undefined } } })).not.toThrow();
  });

  it('refuses a wrong value where plain JavaScript has no compiler: accepts, joinTexts, version (outside test QA70-F6)', () => {
    const js = (spec: object): unknown => defineFlow(spec as Parameters<typeof defineFlow>[0]);
    expect(() => js({ id: 'f', start: 'a', steps: { a: step([], { accepts: 'txt' as 'text' }) } })).toThrow(
      /^flow "f": step "a": accepts must be 'text' or 'any', got "txt"$/,
    );
    expect(() => js({ id: 'f', start: 'a', steps: { a: { ...step([]), joinTexts: 'no' } } })).toThrow(
      /^flow "f": step "a": joinTexts must be true or false, got "no"$/,
    );
    for (const version of ['2', 0, -1, 1.5, Number.NaN])
      expect(() => js({ id: 'f', version, start: 'a', steps: { a: step([]) } }), String(version)).toThrow(
        /^flow "f": version must be a whole number from 1, got /,
      );
    expect(() =>
      js({ id: 'f', version: 3, start: 'a', steps: { a: step([], { joinTexts: false }) } }),
    ).not.toThrow();
  });

  it('names an unreachable step', () => {
    expect(() => defineFlow({ id: 'f', start: 'a', steps: { a: step([]), b: step(['a']) } })).toThrow(
      /step "b" is unreachable from "a"/,
    );
  });

  it('scopes choice ids to their step: the same id in two steps, not twice in one', () => {
    const choices = [{ id: 'yes', title: 'Yes' }];
    const f = defineFlow({
      id: 'f',
      start: 'a',
      steps: {
        a: step(['b'], { accepts: undefined, choices }),
        b: step(['a'], { accepts: undefined, choices }),
      },
    });
    expect(f.choiceSteps.get('yes')).toEqual(['a', 'b']);
    expect(() =>
      defineFlow({
        id: 'f',
        start: 'a',
        steps: { a: step([], { accepts: undefined, choices: [...choices, ...choices] }) },
      }),
    ).toThrow(/step "a": duplicate choice id "yes"/);
  });

  it('refuses an unknown start step and bad ids', () => {
    expect(() => defineFlow({ id: 'f', start: 'zz', steps: { a: step([]) } })).toThrow(FlowDefinitionError);
    expect(() => defineFlow({ id: 'Bad Id', start: 'a', steps: { a: step([]) } })).toThrow(
      /lower_snake_case/,
    );
    // Both name every reply in biz_opaque_callback_data, which Meta caps at 512 (outside test QA35-F5).
    const long = 'a'.repeat(65);
    expect(() => defineFlow({ id: long, start: 'a', steps: { a: step([]) } })).toThrow(
      /id must be at most 64 characters/,
    );
    expect(() => defineFlow({ id: 'f', start: long, steps: { [long]: step([]) } })).toThrow(
      new RegExp(`step "${long}": id must be at most 64 characters`),
    );
    expect(defineFlow({ id: 'a'.repeat(64), start: 'a', steps: { a: step([]) } }).id).toHaveLength(64);
  });

  it('refuses a step without "to" (plain JavaScript: no compiler says so) with a clear error (outside test QA4-L2)', () => {
    const spec = { id: 'js', start: 'a', steps: { a: { say: 'hi', on: () => ({ kind: 'retry' }) } } };
    expect(() => defineFlow(spec as unknown as Parameters<typeof defineFlow>[0])).toThrow(
      /step "a": needs "to", the steps it may go to/,
    );
  });

  it('requires a list label above three choices and caps titles', () => {
    const four = ['a', 'b', 'c', 'd'].map((id) => ({ id, title: id }));
    expect(() =>
      defineFlow({ id: 'f', start: 's', steps: { s: step([], { accepts: undefined, choices: four }) } }),
    ).toThrow(/listButton/);
    const listed = defineFlow({
      id: 'f',
      start: 's',
      steps: { s: step([], { accepts: undefined, choices: four, listButton: 'Pick' }) },
    });
    expect(promptOf(listed.steps.get('s')!, {})).toMatchObject({ type: 'list', button: 'Pick' });
    // A computed `say` returning a list() names its button: not refused at load (outside test QA58-F2).
    const computed = defineFlow({
      id: 'f',
      start: 's',
      steps: {
        s: step([], { accepts: undefined, choices: four, say: () => list('Pick one', 'Open', four) }),
      },
    });
    expect(promptOf(computed.steps.get('s')!, {})).toMatchObject({ type: 'list', button: 'Open' });
    expect(() =>
      defineFlow({
        id: 'f',
        start: 's',
        steps: { s: step([], { accepts: undefined, choices: [{ id: 'x', title: 'x'.repeat(21) }] }) },
      }),
    ).toThrow(/title is 21 characters/);
  });
});

describe('a step whose say is an interactive or media body and that has choices', () => {
  const two = [
    { id: 'yes', title: 'Yes' },
    { id: 'no', title: 'No' },
  ];
  const promptsFor = (say: StepSpec<string>['say'], choices = two): ReturnType<typeof promptsOf> => {
    const f = defineFlow({
      id: 'f',
      start: 's',
      steps: { s: step([], { accepts: undefined, choices, listButton: 'Pick', say }) },
    });
    return promptsOf(f, f.steps.get('s')!, {});
  };

  it("sends the author's buttons body carrying the step's choices, header and footer kept", () => {
    const said = buttons('Table for two?', [], {
      header: 'Booking',
      footer: 'Reply below',
    });
    expect(promptsFor(said)).toEqual([
      {
        type: 'buttons',
        text: 'Table for two?',
        buttons: two,
        header: { type: 'text', text: 'Booking' },
        footer: 'Reply below',
      },
    ]);
    // Computed too: it used to fail every send with "body text is empty".
    expect(promptsFor(() => said)).toHaveLength(1);
  });

  it('turns more than three choices into a list under the same text', () => {
    const four = ['a', 'b', 'c', 'd'].map((id) => ({ id, title: id.toUpperCase() }));
    const [body] = promptsFor(buttons('Which day?', []), four);
    expect(body).toMatchObject({ type: 'list', text: 'Which day?', button: 'Pick' });
  });

  // An outside test (A1): buttons of the prompt's own were silently replaced by the choices, and
  // a text step with buttons and no choices took every tap as a retry.
  it('refuses a prompt whose own buttons are not the choices, or a text step with buttons and no choices', () => {
    expect(() => promptsFor(buttons('Table?', [{ id: 'maybe', title: 'Maybe' }]))).toThrow(
      /own buttons \(maybe\) are not its choices \(yes, no\)/,
    );
    expect(promptsFor(buttons('Table?', [...two]))[0]).toMatchObject({ type: 'buttons', buttons: two });
    expect(() =>
      defineFlow({ id: 'f', start: 's', steps: { s: step([], { say: buttons('Confirm?', [...two]) }) } }),
    ).toThrow(/step "s": its prompt has buttons \(yes, no\) but the step declares no choices/);
    // A step that takes any input decides on the tap itself.
    expect(() =>
      defineFlow({
        id: 'f',
        start: 's',
        steps: { s: step([], { accepts: 'any', say: buttons('Confirm?', [...two]) }) },
      }),
    ).not.toThrow();
  });

  it('sends an image as it is, and the choices after it', () => {
    const said = image('https://shop.example/t.png', { caption: 'Your table' });
    const bodies = promptsFor(said);
    expect(bodies).toHaveLength(2);
    expect(bodies[0]).toMatchObject({ type: 'image' });
    expect(bodies[1]).toEqual({ type: 'buttons', text: 'Pick', buttons: two });
  });
});

describe('toMermaid', () => {
  it('draws every declared transition', () => {
    expect(toMermaid(orderFlow)).toBe(
      [
        'stateDiagram-v2',
        '  [*] --> ask_name',
        '  ask_name --> choose_product',
        '  choose_product --> collect_shipping_address',
        '  collect_shipping_address --> confirm_order',
        '  confirm_order --> completed',
        '  confirm_order --> cancelled',
        '  completed --> ask_name',
        '  cancelled --> ask_name',
        '',
      ].join('\n'),
    );
  });
});
