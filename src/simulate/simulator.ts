/**
 * The simulator's core, shared by the chat UI and script mode: turns what the developer types
 * into signed Cloud API webhooks to a Baton, and the messages Baton sends to the fake Graph API
 * into rendered replies for the right simulated user; answers each send with `sent`,
 * `delivered` and `read` status webhooks, as Meta does.
 * @module
 */
import { request } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { isAgentMessage } from '../flow/agent.ts';
import { signMetaBody } from '../providers/index.ts';
import type { FakeGraphApi, GraphSend } from './fake-graph.ts';
import {
  inboundMessage,
  messagesWebhook,
  newWamid,
  SIM_CHANNEL,
  statusWebhook,
  type SimChannel,
  type UserInput,
} from './inbound.ts';
import { renderMessage, type Pickable, type RenderedMessage } from './render.ts';

export interface SimulatorOptions {
  /** Base URL of the Baton under test, e.g. `http://127.0.0.1:3000`. */
  readonly url: string;
  readonly graph: FakeGraphApi;
  /** `WHATSAPP_APP_SECRET` of the target; webhooks are signed with it when given. */
  readonly secret?: string | undefined;
  readonly channel?: SimChannel;
  /** wa_id of user 1; user N is this number plus N - 1. */
  readonly firstUser?: string;
  /** Send `sent`/`delivered`/`read` webhooks for Baton's messages (default true). */
  readonly statuses?: boolean;
  /** The target's `ADMIN_TOKEN`, for `/event` (posted to the admin API's events route). */
  readonly adminToken?: string | undefined;
  readonly now?: () => number;
}

/** A message Baton sent, rendered. */
export interface BotReply {
  readonly user: string;
  /** 1-based label of the simulated user (its wa_id when it was named by wa_id). */
  readonly label: string;
  readonly wamid: string;
  readonly body: Record<string, unknown>;
  readonly rendered: RenderedMessage;
}

/** Something the user did, as the chat shows it. */
export interface UserAction {
  readonly user: string;
  readonly label: string;
  readonly shown: string;
}

/** The result of one typed line. */
export interface LineResult {
  /** Lines to show the developer (help, errors, hints); not part of the conversation. */
  readonly info: readonly string[];
  readonly quit?: boolean;
  /** Webhook posts made, with their HTTP status. */
  readonly posted: readonly number[];
}

interface UserState {
  readonly waId: string;
  readonly label: string;
  /** The latest message from the bot that had buttons or rows, for picking by number. */
  menu?: { readonly wamid: string; readonly picks: readonly Pickable[] };
  /** Earlier messages with buttons or rows, newest first (at most {@link OLD_MENUS}), for `/pick <id>`. */
  olderMenus?: Array<{ readonly wamid: string; readonly picks: readonly Pickable[] }>;
  lastBotWamid?: string;
  /** The bot's latest message but its notices answering one message (see `LineContext.lastAskWamid`). */
  lastAskWamid?: string;
  /** Raw bytes of the last webhook sent for this user, for `/replay`. */
  lastWebhook?: Buffer;
}

/** Earlier menus a user's `/pick <id>` can still reach (an old message's button: stale input). */
const OLD_MENUS = 20;

export const HELP = [
  'type a message and press Enter; a number picks that button or row of the menu just sent',
  '/pick <n|id>        pick a button or row by number or id (an id of an earlier message taps that one)',
  '/text <words>       send words as text even if they are a number',
  '/image <url> [caption]   send an image',
  '/location <lat>,<long> [name]   send a location',
  '/react <emoji>      react to the bot\u2019s last message',
  '/replay             deliver the last webhook again (as Meta retries do)',
  '/burst a | b        send several messages at once (concurrent webhooks)',
  '/user <n|wa_id>     talk as another user (user 1 is the default)',
  '/event <name> [json]   your systems tell this user\u2019s session something (the flow\u2019s events)',
  '/quit               leave',
];

/** Splits `/cmd rest` into its parts. */
function command(line: string): { cmd: string; rest: string } | undefined {
  const m = /^\/(\w+)\s*(.*)$/s.exec(line.trim());
  return m ? { cmd: m[1]!.toLowerCase(), rest: m[2]!.trim() } : undefined;
}

/**
 * A notice answering one message of the user's (`baton:<flow>:<step>:<version>:<message id>`),
 * not a message of the conversation's own: an agent's (`…:agent-<n>`) is one.
 */
function answersOneMessage(body: Record<string, unknown>): boolean {
  const data = body.biz_opaque_callback_data;
  return typeof data === 'string' && /^baton:[^:]+:[^:]+:\d+:./.test(data) && !isAgentMessage(data);
}

/** What a typed line is read against: the user's latest menu and the bot's latest message. */
export interface LineContext {
  readonly menu?: { readonly wamid: string; readonly picks: readonly Pickable[] } | undefined;
  /** Earlier menus, newest first: `/pick <id>` taps the newest that has the id. */
  readonly olderMenus?:
    ReadonlyArray<{ readonly wamid: string; readonly picks: readonly Pickable[] }> | undefined;
  readonly lastBotWamid?: string | undefined;
  /**
   * The bot's latest message that is not a notice answering one message (a stale button's "that
   * option is from an earlier step", its callback data ending in the message's id): after such a
   * notice the menu before it is still the one a number taps (outside test QA58-F3).
   */
  readonly lastAskWamid?: string | undefined;
}

/** The menu a bare number picks from: the latest one, while it is the bot's latest message. */
function latestMenu(u: LineContext): LineContext['menu'] {
  const latest = u.lastAskWamid ?? u.lastBotWamid;
  return u.menu !== undefined && (latest === undefined || u.menu.wamid === latest) ? u.menu : undefined;
}

/**
 * A bare number that names no choice of the menu just shown goes as text (a bot's answer to
 * input it does not expect is worth trying), and says so: it looked like a pick that did nothing
 * (outside test QA131-F6).
 */
export function numberNotInMenu(line: string, u: LineContext): string | undefined {
  const t = line.trim();
  const menu = /^\d+$/.test(t) ? latestMenu(u) : undefined;
  if (menu === undefined || menu.picks.some((p) => p.n === Number(t))) return undefined;
  return `(no choice ${t} in the menu, ${menu.picks.length === 1 ? '1' : `1-${menu.picks.length}`}: sent as text)`;
}

/**
 * Reads one typed line (not `/user`, `/replay`, `/burst`, `/help`, `/quit`) as what the user
 * sends: a number that names a choice of the latest menu picks it, `/pick`, `/text`, `/image`,
 * `/location` and `/react` as in {@link HELP}; anything else is text. A string is a problem.
 * @example
 * parseUserLine('2', { menu }); // { type: 'button', id: 'sku_551a', title: 'Rain Jacket', context: menu.wamid }
 */
export function parseUserLine(line: string, u: LineContext): UserInput | string {
  const c = command(line);
  const pick = (ref: string): UserInput | string => {
    const menu = u.menu;
    // No menu seen yet (a simulator attached mid-conversation): an id is tapped as it is, a
    // button of a message this simulator did not show (outside test QA4-L9); a number names nothing.
    if (!menu)
      return /^\d+$/.test(ref)
        ? 'no buttons or rows to pick from yet'
        : { type: 'button', id: ref, title: ref };
    const p = /^\d+$/.test(ref)
      ? menu.picks.find((x) => x.n === Number(ref))
      : menu.picks.find((x) => x.id === ref);
    if (p) return { type: p.kind, id: p.id, title: p.title, context: menu.wamid };
    // An id of an earlier message's button or row: the user scrolled up and tapped it (what
    // the bot makes of an old button, SPEC 7's stale input, is tried this way).
    if (!/^\d+$/.test(ref))
      for (const old of u.olderMenus ?? []) {
        const q = old.picks.find((x) => x.id === ref);
        if (q) return { type: q.kind, id: q.id, title: q.title, context: old.wamid };
      }
    return `no choice ${ref} (have ${menu.picks.map((x) => `${x.n}. ${x.title}`).join(', ')})`;
  };
  if (!c) {
    const t = line.trim();
    // A bare number picks from the menu only while it is the bot's latest message: at a later
    // text prompt ("How many people?") it is an answer (`/pick` still reaches an older menu).
    if (/^\d+$/.test(t) && latestMenu(u)?.picks.some((p) => p.n === Number(t))) return pick(t);
    return { type: 'text', text: line };
  }
  switch (c.cmd) {
    case 'text':
      return c.rest === '' ? 'usage: /text <words>' : { type: 'text', text: c.rest };
    case 'pick':
      return c.rest === '' ? 'usage: /pick <n|id>' : pick(c.rest);
    case 'image': {
      const [link, ...caption] = c.rest.split(/\s+/);
      if (!link || !/^https?:\/\//.test(link)) return 'usage: /image <http(s) url> [caption]';
      return { type: 'image', link, ...(caption.length ? { caption: caption.join(' ') } : {}) };
    }
    case 'location': {
      const m = /^(-?\d+(?:\.\d+)?)\s*,\s*(-?\d+(?:\.\d+)?)\s*(.*)$/.exec(c.rest);
      if (!m) return 'usage: /location <lat>,<long> [name]';
      const latitude = Number(m[1]);
      const longitude = Number(m[2]);
      if (Math.abs(latitude) > 90 || Math.abs(longitude) > 180)
        return 'latitude must be -90..90, longitude -180..180';
      return { type: 'location', latitude, longitude, ...(m[3] ? { name: m[3] } : {}) };
    }
    case 'react':
      if (c.rest === '') return 'usage: /react <emoji>';
      if (!u.lastBotWamid) return 'nothing to react to yet';
      return { type: 'reaction', emoji: c.rest, messageId: u.lastBotWamid };
    default:
      return `unknown command /${c.cmd} (/help lists them)`;
  }
}

/** Splits `/burst a | b` into its lines; undefined when `line` is no burst. */
export function burstParts(line: string): string[] | undefined {
  const c = command(line);
  if (c?.cmd !== 'burst') return undefined;
  return c.rest
    .split('|')
    .map((p) => p.trim())
    .filter((p) => p !== '');
}

export class Simulator {
  readonly channel: SimChannel;
  private readonly users = new Map<string, UserState>();
  private current: UserState;
  private readonly replyListeners: ((r: BotReply) => void)[] = [];
  private readonly actionListeners: ((a: UserAction) => void)[] = [];
  private readonly now: () => number;
  private lastTs = 0;
  /** Status webhooks Baton refused (anything but 200). */
  statusFailures = 0;
  private pendingStatuses = new Set<Promise<void>>();
  private readonly unsubscribe: () => void;

  constructor(private readonly opts: SimulatorOptions) {
    this.channel = opts.channel ?? SIM_CHANNEL;
    this.now = opts.now ?? Date.now;
    this.current = this.user('1');
    this.unsubscribe = opts.graph.onSend((send) => this.onSend(send));
  }

  /** Stops listening to the fake Graph API (status webhooks in flight still finish). */
  close(): void {
    this.unsubscribe();
  }

  /** The current user's wa_id. */
  get currentUser(): string {
    return this.current.waId;
  }

  get currentLabel(): string {
    return this.current.label;
  }

  onReply(listener: (r: BotReply) => void): void {
    this.replyListeners.push(listener);
  }

  onAction(listener: (a: UserAction) => void): void {
    this.actionListeners.push(listener);
  }

  /** User `n` (1-based) or a literal wa_id. */
  private user(ref: string): UserState {
    let waId: string;
    let label: string;
    if (/^\d{1,3}$/.test(ref) && Number(ref) >= 1) {
      waId = String(BigInt(this.opts.firstUser ?? '15550100001') + BigInt(Number(ref) - 1));
      label = ref;
    } else {
      waId = ref;
      label = ref;
    }
    let u = this.users.get(waId);
    if (!u) {
      u = { waId, label };
      this.users.set(waId, u);
    }
    return u;
  }

  /** A message Baton sent; one to a user this simulator does not play is someone else's. */
  private onSend(send: GraphSend): void {
    const u = this.users.get(send.to);
    if (!u) return;
    const rendered = renderMessage(send.body);
    u.lastBotWamid = send.wamid;
    if (!answersOneMessage(send.body)) u.lastAskWamid = send.wamid;
    if (rendered.picks.length > 0) {
      if (u.menu) u.olderMenus = [u.menu, ...(u.olderMenus ?? [])].slice(0, OLD_MENUS);
      u.menu = { wamid: send.wamid, picks: rendered.picks };
    }
    for (const l of this.replyListeners)
      l({ user: u.waId, label: u.label, wamid: send.wamid, body: send.body, rendered });
    if (this.opts.statuses !== false) {
      const p = this.sendStatuses(send).finally(() => this.pendingStatuses.delete(p));
      this.pendingStatuses.add(p);
    }
  }

  private async sendStatuses(send: GraphSend): Promise<void> {
    for (const status of ['sent', 'delivered', 'read'] as const) {
      await new Promise((r) => setTimeout(r, 15));
      const body = Buffer.from(
        JSON.stringify(statusWebhook(this.channel, send.wamid, send.to, status, this.timestamp())),
      );
      try {
        const code = await this.post(body);
        if (code !== 200) this.statusFailures++;
      } catch {
        this.statusFailures++;
      }
    }
  }

  /**
   * Whether Baton still has work in flight for the users of this chat: a message stored and not
   * yet processed (an effect's result among them: the reply it brings is not written yet), an
   * effect running (a lookup whose answer brings a reply), or a reply not yet sent, read from the
   * admin API. `null` when it cannot say: no admin token for the target, or no answer.
   */
  async busy(): Promise<boolean | null> {
    const token = this.opts.adminToken;
    if (!token) return null;
    const get = async (path: string, channel = false): Promise<unknown> => {
      const url = new URL(path, this.opts.url);
      if (channel) url.searchParams.set('channel', this.channel.phoneNumberId);
      const r = await fetch(url, {
        headers: { authorization: `Bearer ${token}` },
        signal: AbortSignal.timeout(2000),
      });
      return r.status === 200 ? r.json() : null;
    };
    const unsent = async (waId: string): Promise<boolean> => {
      const body = (await get(`/admin/api/sessions/${waId}/outbound`, true)) as {
        outbound?: Array<{ status?: unknown }>;
      } | null;
      return (body?.outbound ?? []).some((o) => o.status === 'pending' || o.status === 'sending');
    };
    try {
      const stats = (await get('/admin/api/stats')) as { queue_depth?: unknown } | null;
      if (stats === null) return null;
      if (typeof stats.queue_depth === 'number' && stats.queue_depth > 0) return true;
      return (await Promise.all([...this.users.keys()].map(unsent))).some(Boolean);
    } catch {
      return null;
    }
  }

  /** Waits for the status webhooks in flight. */
  async drain(): Promise<void> {
    while (this.pendingStatuses.size > 0) await Promise.allSettled([...this.pendingStatuses]);
  }

  /** Seconds since the epoch, strictly increasing so Baton orders messages as typed. */
  private timestamp(): number {
    const t = Math.floor(this.now() / 1000);
    this.lastTs = Math.max(t, this.lastTs);
    return this.lastTs;
  }

  private post(body: Buffer): Promise<number> {
    const url = new URL('/webhooks/whatsapp', this.opts.url);
    const headers: Record<string, string | number> = {
      'content-type': 'application/json',
      'content-length': body.length,
    };
    if (this.opts.secret) headers['x-hub-signature-256'] = signMetaBody(body, this.opts.secret);
    const send = url.protocol === 'https:' ? httpsRequest : request;
    return new Promise((resolve, reject) => {
      const req = send(url, { method: 'POST', headers }, (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      });
      req.on('error', reject);
      req.end(body);
    });
  }

  /** Parses one typed line into an input for the current user; a string is a problem to show. */
  private parseInput(line: string): UserInput | string {
    return parseUserLine(line, this.current);
  }

  private shown(input: UserInput): string {
    switch (input.type) {
      case 'text':
        return input.text;
      case 'button':
      case 'row':
        return `(tapped) ${input.title}`;
      case 'image':
        return `[image] ${input.link}${input.caption ? ` ${input.caption}` : ''}`;
      case 'location':
        return `📍 ${input.latitude},${input.longitude}${input.name ? ` ${input.name}` : ''}`;
      case 'reaction':
        return `(reacted ${input.emoji})`;
    }
  }

  private webhookFor(input: UserInput): Buffer {
    const msg = inboundMessage(this.channel, this.current.waId, input, newWamid(), this.timestamp());
    const name = `Sim User ${this.current.label}`;
    return Buffer.from(JSON.stringify(messagesWebhook(this.channel, this.current.waId, name, [msg])));
  }

  private emit(shown: string): void {
    for (const l of this.actionListeners) l({ user: this.current.waId, label: this.current.label, shown });
  }

  /** Acts on one typed line. */
  /** Posts an event for the current user to the admin API (the flow's `events`). */
  private async event(rest: string): Promise<LineResult> {
    const parts = eventParts(rest);
    if (typeof parts === 'string') return { info: [parts], posted: [] };
    const token = this.opts.adminToken;
    if (!token) return { info: ['/event needs the target\u2019s admin token: set ADMIN_TOKEN'], posted: [] };
    const channel = this.channel.phoneNumberId;
    const url = new URL(`/admin/api/sessions/${this.current.waId}/events`, this.opts.url);
    url.searchParams.set('channel', channel);
    this.emit(`(event ${parts.name}${parts.payload === null ? '' : ` ${JSON.stringify(parts.payload)}`})`);
    try {
      const r = await fetch(url, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: JSON.stringify({ name: parts.name, payload: parts.payload }),
      });
      // Said at once: while the session waits for an effect an event waits too, and nothing else
      // showed that it was stored (outside test QA7-F8).
      if (r.status === 202) {
        const { duplicate, held } = (await r.json().catch(() => ({}))) as {
          duplicate?: unknown;
          held?: unknown;
        };
        const said =
          duplicate === true
            ? 'event already stored (the same id)'
            : held === true
              ? 'event stored, but an agent has the session: it is recorded held, not applied (post it again after the hand-back)'
              : 'event stored: applied in turn';
        return { info: [said], posted: [r.status] };
      }
      const why = ((await r.json().catch(() => ({}))) as { error?: unknown }).error;
      const said = typeof why === 'string' ? why : r.statusText;
      return { info: [`event refused (${r.status}): ${said}`], posted: [r.status] };
    } catch (err) {
      return { info: [`event not posted: ${err instanceof Error ? err.message : String(err)}`], posted: [] };
    }
  }

  async handleLine(line: string): Promise<LineResult> {
    const c = command(line);
    if (line.trim() === '') return { info: [], posted: [] };
    if (c?.cmd === 'quit' || c?.cmd === 'exit') return { info: [], quit: true, posted: [] };
    if (c?.cmd === 'help') return { info: HELP, posted: [] };
    if (c?.cmd === 'user') {
      if (!/^\d{1,15}$/.test(c.rest) || c.rest === '0')
        return { info: ['usage: /user <n|wa_id>'], posted: [] };
      this.current = this.user(c.rest);
      return { info: [`now talking as user ${this.current.label} (${this.current.waId})`], posted: [] };
    }
    if (c?.cmd === 'event') return this.event(c.rest);
    if (c?.cmd === 'replay') {
      const raw = this.current.lastWebhook;
      if (!raw) return { info: ['nothing to replay yet'], posted: [] };
      this.emit('(replayed the last webhook)');
      const status = await this.post(raw);
      return { info: status === 200 ? [] : [answered(status)], posted: [status] };
    }
    if (c?.cmd === 'burst') {
      const parts = burstParts(line) ?? [];
      if (parts.length < 2) return { info: ['usage: /burst a | b [| c...]'], posted: [] };
      const inputs = parts.map((p) => this.parseInput(p));
      const bad = inputs.find((i): i is string => typeof i === 'string');
      if (bad !== undefined) return { info: [bad], posted: [] };
      const bodies = (inputs as UserInput[]).map((i) => {
        this.emit(this.shown(i));
        return this.webhookFor(i);
      });
      this.current.lastWebhook = bodies[bodies.length - 1];
      const statuses = await Promise.all(bodies.map((b) => this.post(b)));
      const bad2 = statuses.filter((s) => s !== 200);
      return { info: bad2.length ? [`webhooks answered ${statuses.join(', ')}`] : [], posted: statuses };
    }
    const input = this.parseInput(line);
    if (typeof input === 'string') return { info: [input], posted: [] };
    const hint = c ? undefined : numberNotInMenu(line, this.current);
    const body = this.webhookFor(input);
    this.current.lastWebhook = body;
    this.emit(this.shown(input));
    const status = await this.post(body);
    const info = [...(hint === undefined ? [] : [hint]), ...(status === 200 ? [] : [answered(status)])];
    return { info, posted: [status] };
  }
}

/** `/event <name> [json]`: the parts, or what is wrong with them. */
export function eventParts(rest: string): { name: string; payload: unknown } | string {
  const m = /^([a-z][a-z0-9_]*)\s*(.*)$/s.exec(rest.trim());
  if (!m) return 'usage: /event <name> [json payload], e.g. /event order_shipped {"order":"ORD-1"}';
  if (m[2] === '') return { name: m[1]!, payload: null };
  try {
    return { name: m[1]!, payload: JSON.parse(m[2]!) as unknown };
  } catch {
    return `/event: the payload is not JSON: ${m[2]!}`;
  }
}

/** What a refused webhook means to someone chatting: 401 is a secret the simulator lacks. */
function answered(status: number): string {
  return status === 401
    ? 'webhook answered 401: Baton checks signatures; pass --secret <its WHATSAPP_APP_SECRET>'
    : `webhook answered ${status}`;
}
