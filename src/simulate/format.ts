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

/** The narrowest a reply's lines are wrapped to, characters (a terminal narrower than its label and this). */
const MIN_WIDTH = 20;

/**
 * `bot > 1 | Thanks, Jane...` then continuation lines; an agent's message (its callback data
 * ends `:agent-<n>`) is `agent > 1 | ...` (outside test QA131-F5: it read as the bot's).
 */
export function formatReply(r: BotReply, paint: Paint = PLAIN, columns?: number): string[] {
  const data = r.body.biz_opaque_callback_data;
  const who = typeof data === 'string' && isAgentMessage(data) ? 'agent' : 'bot';
  const head = `${who} > ${r.label} |`;
  const pad = `${' '.repeat(head.length - 1)}|`;
  const width = columns === undefined ? Infinity : Math.max(MIN_WIDTH, columns - head.length - 2);
  return r.rendered.lines
    .flatMap((line) => wrapped(line, width))
    .map((line, i) => `${paint.bot(i === 0 ? head : pad)} ${line}`);
}

/**
 * A line cut at spaces into lines of at most `width` characters (a longer word cut where it must),
 * so that a long reply stays in the chat's column in a terminal (the terminal's own wrap put its
 * rest under the label: outside test QA131-F6). Characters, not display cells: an emoji or a
 * CJK character may overrun by one.
 */
export function wrapped(line: string, width: number): string[] {
  const chars = Array.from(line);
  if (chars.length <= width) return [line];
  const out: string[] = [];
  let rest = chars;
  while (rest.length > width) {
    const space = rest.lastIndexOf(' ', width);
    const cut = space > 0 ? space : width;
    out.push(rest.slice(0, cut).join('').trimEnd());
    rest = rest.slice(space > 0 ? cut + 1 : cut);
  }
  if (rest.length > 0) out.push(rest.join(''));
  return out;
}
