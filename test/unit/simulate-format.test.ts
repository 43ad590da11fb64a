/**
 * The simulator's chat lines: the bot's replies and an agent's messages are told apart (outside
 * test QA131-F5: an agent's message read as the bot's).
 */
import { describe, expect, it } from 'vitest';
import { formatReply, wrapped } from '../../src/simulate/format.ts';
import { numberNotInMenu, parseUserLine, type BotReply } from '../../src/simulate/simulator.ts';

const reply = (data: string, lines: string[]): BotReply => ({
  user: '15550000001',
  label: '1',
  wamid: 'wamid.1',
  body: { type: 'text', biz_opaque_callback_data: data },
  rendered: { kind: 'text', lines, picks: [] },
});

describe('formatReply', () => {
  it("labels the bot's replies bot and an agent's messages agent", () => {
    expect(formatReply(reply('baton:order:ask_name:1', ['What is your name?']))).toEqual([
      'bot > 1 | What is your name?',
    ]);
    expect(formatReply(reply('baton:order:ask_name:2:agent-1', ['Ana here', 'how can I help?']))).toEqual([
      'agent > 1 | Ana here',
      '          | how can I help?',
    ]);
    // A notice answering one message is the bot's.
    expect(formatReply(reply('baton:order:ask_name:2:wamid.agent-7x', ['That option is old']))[0]).toMatch(
      /^bot > /,
    );
  });
});

describe('long lines and numbers outside the menu (QA131-F6)', () => {
  it('wraps a reply at spaces to the terminal width, under its label', () => {
    const long = 'Please send the address where we should deliver your order, street and number first';
    const lines = formatReply(reply('baton:order:ask_address:3', [long, 'short']), undefined, 40);
    expect(lines).toEqual([
      'bot > 1 | Please send the address where',
      '        | we should deliver your order,',
      '        | street and number first',
      '        | short',
    ]);
    for (const l of lines) expect(l.length).toBeLessThanOrEqual(40);
    expect(lines.map((l) => l.slice(10)).join(' ')).toBe(`${long} short`);
    // Without a width (a pipe, the transcript) nothing is cut.
    expect(formatReply(reply('baton:order:ask_address:3', [long]))).toEqual([`bot > 1 | ${long}`]);
  });

  it('cuts a word longer than the width, and never loses a character', () => {
    expect(wrapped('abcdefghij klm', 4)).toEqual(['abcd', 'efgh', 'ij', 'klm']);
    expect(wrapped('ok', 4)).toEqual(['ok']);
    expect(wrapped('🙂🙂🙂🙂🙂', 2)).toEqual(['🙂🙂', '🙂🙂', '🙂']);
  });

  it('says a bare number outside the menu just shown went as text', () => {
    const menu = {
      wamid: 'wamid.m',
      picks: [
        { n: 1, kind: 'button' as const, id: 'a', title: 'A' },
        { n: 2, kind: 'button' as const, id: 'b', title: 'B' },
      ],
    };
    const u = { menu, lastBotWamid: 'wamid.m' };
    expect(parseUserLine('7', u)).toEqual({ type: 'text', text: '7' });
    expect(numberNotInMenu('7', u)).toBe('(no choice 7 in the menu, 1-2: sent as text)');
    expect(numberNotInMenu('2', u)).toBeUndefined();
    expect(numberNotInMenu('hello', u)).toBeUndefined();
    // At a text prompt after the menu a number is an answer: no hint.
    expect(numberNotInMenu('7', { menu, lastBotWamid: 'wamid.later' })).toBeUndefined();
  });
});
