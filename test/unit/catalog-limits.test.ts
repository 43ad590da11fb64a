/**
 * Choices and list labels given as words from the catalogs are checked against WhatsApp's limits
 * at load, in every language: a translation over a limit was found by that language's first user,
 * whose prompt was dead-lettered at every visit (outside test QA103-F11).
 */
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { defineFlow, testFlow, type Translate } from '../../src/index.ts';

const en = { pick: 'Pick', yes: 'Yes', no: 'No', menu: 'Menu', row: 'Row' };

function clinic(pt: typeof en, rows = 2) {
  return defineFlow({
    id: 'clinic',
    data: z.object({ lang: z.enum(['en', 'pt']).optional() }),
    words: { field: 'lang', default: 'en', catalogs: { en, pt } },
    start: 'a',
    steps: {
      a: {
        say: (_d, { t }) => t('pick'),
        choices: [
          { id: 'yes', title: (_d, { t }) => t('yes') },
          { id: 'no', title: (_d, { t }) => t('no') },
          ...Array.from({ length: rows - 2 }, (_, i) => ({
            id: `r${i}`,
            title: (_d: unknown, { t }: { t: Translate }) => t('row'),
          })),
        ],
        listButton: (_d, { t }) => t('menu'),
        to: ['a'],
        on: (_i, c) => c.goto('a'),
      },
    },
  });
}

describe('words of choices, in every catalog', () => {
  it('refuses at load a button title over 20 characters in one language, naming it', () => {
    expect(() => clinic({ ...en, yes: 'Sim, confirmo a marcação' })).toThrow(
      /step "a", in catalog "pt": .*button 1 title is 24 characters; WhatsApp allows 20/,
    );
  });

  it('refuses a list row or the list button over its limit', () => {
    expect(() => clinic({ ...en, row: 'Uma linha com título muito comprido' }, 5)).toThrow(
      /in catalog "pt": .*row/,
    );
    expect(() => clinic({ ...en, menu: 'Menu de opções principal' }, 5)).toThrow(/in catalog "pt": .*button/);
  });

  it('loads translations within the limits, and words that need data are left to run time', async () => {
    const t = testFlow(clinic({ pick: 'Escolha', yes: 'Sim', no: 'Não', menu: 'Menu', row: 'Linha' }, 5));
    expect((await t.send('hi')).length).toBeGreaterThan(0);
    expect(() =>
      defineFlow({
        id: 'named',
        data: z.object({ name: z.string().optional() }),
        start: 'a',
        steps: {
          a: {
            say: 'Who?',
            // Needs the data: nothing to build with empty data.
            choices: [{ id: 'me', title: (d) => d.name!.toUpperCase() }],
            to: ['a'],
            on: (_i, c) => c.goto('a'),
          },
        },
      }),
    ).not.toThrow();
  });
});
