/**
 * The chat as lines: one format for the terminal (with colour when it is a TTY) and the
 * transcript file (plain).
 * @module
 */
import { isAgentMessage } from '../flow/agent.ts';
import type { BotReply, UserAction } from './simulator.ts';

export interface Paint {
  bot(s: string): string;
  user(s: string): string;
  dim(s: string): string;
}

export const PLAIN: Paint = { bot: (s) => s, user: (s) => s, dim: (s) => s };
export const ANSI: Paint = {
  bot: (s) => `\x1b[32m${s}\x1b[39m`,
  user: (s) => `\x1b[36m${s}\x1b[39m`,
  dim: (s) => `\x1b[2m${s}\x1b[22m`,
};

/** `user 1 > Jane` */
export function formatAction(a: UserAction, paint: Paint = PLAIN): string[] {
  return [`${paint.user(`user ${a.label} >`)} ${a.shown}`];
}

/**
 * `bot > 1 | Thanks, Jane...` then continuation lines; an agent's message (its callback data
 * ends `:agent-<n>`) is `agent > 1 | ...` (outside test QA131-F5: it read as the bot's).
 */
export function formatReply(r: BotReply, paint: Paint = PLAIN): string[] {
  const data = r.body.biz_opaque_callback_data;
  const who = typeof data === 'string' && isAgentMessage(data) ? 'agent' : 'bot';
  const head = `${who} > ${r.label} |`;
  const pad = `${' '.repeat(head.length - 1)}|`;
  return r.rendered.lines.map((line, i) => `${paint.bot(i === 0 ? head : pad)} ${line}`);
}
