import { describe, expect, it } from 'vitest';
import { orderFlow } from '../../src/bots/order.ts';
import { FlowDefinitionError } from '../../src/errors.ts';
import { defineFlow, promptOf, toMermaid, type StepSpec } from '../../src/flow/define.ts';

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
    expect(() =>
      defineFlow({
        id: 'f',
        start: 's',
        steps: { s: step([], { accepts: undefined, choices: [{ id: 'x', title: 'x'.repeat(21) }] }) },
      }),
    ).toThrow(/title is 21 characters/);
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
