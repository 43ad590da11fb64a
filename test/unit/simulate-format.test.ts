/**
 * The simulator's chat lines: the bot's replies and an agent's messages are told apart (outside
 * test QA131-F5: an agent's message read as the bot's).
 */
import { describe, expect, it } from 'vitest';
import { formatReply } from '../../src/simulate/format.ts';
import type { BotReply } from '../../src/simulate/simulator.ts';

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
