/**
 * Several flows in one Baton: a router picks the flow of a new session from its first message
 * (by keyword, by the business number it was sent to, or by any function of it). Sessions keep
 * their flow afterwards. Pure: no I/O.
 * @module
 */
import type { StoredMessage } from '../model/message.ts';

/**
 * Picks a flow id for a new session from its first message; `undefined` means the default flow.
 * One made by {@link flowRouter} also lists the flows its keywords and channels name, so a
 * module naming a flow it does not serve is refused at load.
 */
export type FlowRouter = ((first: StoredMessage) => string | undefined) & {
  readonly names?: readonly string[];
};

export interface RouterSpec {
  /** A first text equal to (or starting with) one of these words, any case, picks that flow. */
  readonly keywords?: Readonly<Record<string, string>>;
  /** Messages to this business number (`phone_number_id`, or the gateway's session) pick that flow. */
  readonly channels?: Readonly<Record<string, string>>;
  /** Asked when neither matched. */
  readonly pick?: FlowRouter;
}

/**
 * A text as keywords are matched: lower case, punctuation and symbols as spaces ("¿Status?",
 * "status!" and "Status." all read "status"), spaces collapsed.
 */
function keywordForm(text: string): string {
  return text
    .toLowerCase()
    .replace(/[\p{P}\p{S}\s]+/gu, ' ')
    .trim();
}

/**
 * A router from keywords, entry points and a function, tried in that order.
 * @example
 * export const router = flowRouter({ keywords: { status: 'order_status' }, channels: { '1065403': 'order' } });
 */
export function flowRouter(spec: RouterSpec): FlowRouter {
  const words = Object.entries(spec.keywords ?? {}).map(([w, flow]) => [keywordForm(w), flow] as const);
  const route = (m: StoredMessage): string | undefined => {
    if (m.content.type === 'text') {
      const said = keywordForm(m.content.body);
      for (const [w, flow] of words) {
        if (said === w || said.startsWith(`${w} `)) return flow;
      }
    }
    const byChannel = spec.channels?.[m.channel];
    if (byChannel !== undefined) return byChannel;
    return spec.pick?.(m);
  };
  const names = [...new Set([...words.map(([, f]) => f), ...Object.values(spec.channels ?? {})])];
  return Object.assign(route, { names });
}
