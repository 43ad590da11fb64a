/**
 * The dashboard's pages as HTML (`./html.ts` escapes every value): the layout, the sign-in
 * form, and the cards of the session page. `./dashboard.ts` serves them.
 * @module
 */
import type { FailedReply } from '../backends/types.ts';
import { dataFieldKind, type DataFieldKind, type Flow } from '../flow/define.ts';
import { agentOf, handbackOpen, missingNeeds } from '../flow/agent.ts';
import { notServedBy } from '../flow/transition.ts';
import { SHARED_CHAT_NAMES, sharedChatKind, type StoredMessage } from '../model/message.ts';
import { bidiSafeJson, clip, wholeCharactersWithin } from '../flow/replies.ts';
import {
  mayHaveReached,
  toSessionView,
  type DeadLetter,
  type OutboundRecord,
  type OutboundStatus,
  type SessionSnapshot,
  type TransitionKind,
  type TransitionRecord,
} from '../model/session.ts';
import { inboundView, type ConversationItem } from './conversation.ts';
import { escapeHtml, html, raw, type Html } from './html.ts';
import type { LeaseView } from './reads.ts';

/** Transition kinds the timeline marks. */
const MARKED_KINDS = new Set([
  'late',
  'stale_input',
  'escalated',
  'held',
  'agent_message',
  'handback',
  'admin_reset',
]);

export const q = encodeURIComponent;

/**
 * Most characters (code points, as the API's `AgentMessageBody` counts them) in an agent's
 * message: WhatsApp's text limit.
 */
const AGENT_TEXT_MAX = 4096;

/** A duration for people: `850ms`, `42s`, `3m 12s`, `5h 2m`, `2d 4h`. */
export function duration(ms: number): string {
  if (ms < 1000) return `${Math.max(0, Math.round(ms))}ms`;
  const s = Math.floor(ms / 1000);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
  if (s < 86_400) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
  return `${Math.floor(s / 86_400)}d ${Math.floor((s % 86_400) / 3600)}h`;
}

export function sessionHref(s: { user: string; channel: string }): string {
  return `/admin/session?wa_id=${q(s.user)}&channel=${q(s.channel)}`;
}

function api(path: string, s: { channel: string }): string {
  return `/admin/api${path}?channel=${q(s.channel)}`;
}

interface Page {
  readonly title: string;
  readonly csrf: string;
  readonly flows: ReadonlyMap<string, Flow>;
  readonly body: Html;
}

export function layout(p: Page): string {
  return html`<!doctype html>
    <html lang="en">
      <head>
        <meta charset="utf-8" />
        <meta name="viewport" content="width=device-width, initial-scale=1" />
        <meta name="baton-csrf" content="${p.csrf}" />
        <title>${p.title} · Baton</title>
        <link rel="icon" href="data:," />
        <link rel="stylesheet" href="/admin/assets/dashboard.css" />
        <script src="/admin/assets/dashboard.js" defer></script>
      </head>
      <body>
        <header class="top">
          <a class="brand" href="/admin">Baton</a>
          <nav>
            <a href="/admin">Overview</a>
            <a href="/admin/inbox" id="nav-inbox">Inbox</a>
            ${[...p.flows.keys()].map((id) => html`<a href="/admin/flows/${q(id)}">Flow ${id}</a>`)}
          </nav>
          <form class="find" method="get" action="/admin/session" role="search">
            <input
              name="wa_id"
              id="find-wa-id"
              placeholder="Find a session by number"
              aria-label="WhatsApp number or user id"
              required
            />
            <button type="submit">Find</button>
          </form>
          <label class="me"
            >Your name
            <input
              id="agent-name"
              placeholder="for take, messages, handback"
              aria-label="Your name, as the transition log records your actions"
              maxlength="100"
              autocomplete="off"
          /></label>
          <label class="live" title="Reload this page every 5 s (paused while you type or confirm)">
            <input type="checkbox" id="live-refresh" /> Live
          </label>
          <span class="live-state" id="live-state" role="status"></span>
          <form class="api signout" data-method="POST" data-url="/admin/logout" data-next="/admin">
            <button type="submit">Sign out</button>
          </form>
        </header>
        <main>
          <h1>${p.title}</h1>
          <p id="page-done"><span class="done" role="status"></span></p>
          ${p.body}
        </main>
      </body>
    </html> `.value;
}

/** A page outside the signed-in layout (sign-in, unavailable): Baton's name and one card. */
function standalonePage(title: string, card: Html, refreshSec?: number): string {
  return html`<!doctype html>
    <html lang="en">
      <head>
        <meta charset="utf-8" />
        <meta name="viewport" content="width=device-width, initial-scale=1" />
        ${refreshSec !== undefined ? html`<meta http-equiv="refresh" content="${refreshSec}" />` : ''}
        <title>${title} · Baton</title>
        <link rel="icon" href="data:," />
        <link rel="stylesheet" href="/admin/assets/dashboard.css" />
      </head>
      <body class="signin">
        <main>
          <h1>Baton</h1>
          ${card}
        </main>
      </body>
    </html> `.value;
}

/**
 * What a page says when it cannot be built: the store did not answer (Redis or PostgreSQL down)
 * or Baton failed. A page of its own (the usual one needs the store for the sign-in check), that
 * says nothing was changed and tries again by itself every 10 s.
 */
export function unavailablePage(status: number, detail: string): string {
  return standalonePage(
    'Unavailable',
    html`<section class="card" id="unavailable" role="alert">
      <h2>${status === 503 ? 'The store is not answering' : 'This page failed'}</h2>
      <p>${detail}</p>
      <p>
        Nothing was changed by opening this page. It tries again every 10 seconds;
        <a href="">try now</a>, or go to the <a href="/admin">overview</a>.
      </p>
    </section>`,
    10,
  );
}

/** The sign-in page; `nonce` is the form's (see `AdminAuth.loginNonce`). */
export function signInPage(nonce: string, error?: string, next?: string): string {
  return standalonePage(
    'Sign in',
    html`<form method="post" action="/admin/login" class="card" id="signin">
      <input type="hidden" name="nonce" value="${nonce}" />
      ${next !== undefined ? html`<input type="hidden" name="next" value="${next}" />` : ''}
      <label for="token">Admin token</label>
      <input type="password" id="token" name="token" autocomplete="current-password" required autofocus />
      ${error ? html`<p class="error" role="alert">${error}</p>` : ''}
      <button type="submit">Sign in</button>
    </form>`,
  );
}

export function actionForm(opts: {
  method: string;
  url: string;
  label: string;
  id?: string;
  next?: string;
  cls?: string;
  fields?: Html;
  /**
   * Sends the agent's name (the "Your name" field) as `agent`: refused without one, or with
   * `'optional'` sent only when there is one.
   */
  agent?: boolean | 'optional';
}): Html {
  return html`<form
    class="api ${opts.cls ?? ''}"
    data-method="${opts.method}"
    data-url="${opts.url}"
    ${opts.next ? html` data-next="${opts.next}"` : ''}${opts.id ? html` id="${opts.id}"` : ''}${opts.agent ? html` data-agent="${opts.agent === 'optional' ? 'optional' : 'required'}"` : ''}
  >
    ${opts.fields ?? ''}<button type="submit">${opts.label}</button>
    ${opts.agent ? html`<span class="as-agent muted"></span>` : ''}
    <span class="error" role="alert"></span>
    <span class="done" role="status"></span>
  </form>`;
}

export function stateCard(s: SessionSnapshot, lease: LeaseView | null): Html {
  const v = toSessionView(s);
  const agent = agentOf(s);
  const row = (label: string, id: string, value: Html | string | number) =>
    html`<tr>
      <th>${label}</th>
      <td id="${id}">${value}</td>
    </tr>`;
  return html`<section class="card" id="state">
    <h2>State</h2>
    <table class="kv">
      ${row('Flow', 'state-flow', `${v.flow} v${v.metadata.flow_version}`)}
      ${row('Step', 'state-step', v.current_step ?? '(none)')}
      ${row('Version', 'state-version', v.metadata.version)}
      ${row('Retry count', 'state-retry-count', v.metadata.retry_count)}
      ${row('Needs agent', 'state-needs-agent', v.metadata.needs_agent ? html`<span class="badge warn">yes</span>${agent ? html` taken by <strong>${agent}</strong>` : ''}` : 'no')}
      ${v.metadata.handoff_reason !== undefined ? row('Why', 'state-handoff-reason', v.metadata.handoff_reason) : ''}
      ${row('Last interaction', 'state-last-interaction', v.metadata.last_interaction === null ? '-' : html`<time>${v.metadata.last_interaction}</time>`)}
      ${row('Last message id', 'state-last-message-id', v.metadata.last_message_id ?? '-')}
      ${row('Created', 'state-created', html`<time>${v.metadata.created_at}</time>`)}
      ${row(
        'Lease',
        'state-lease',
        lease === null
          ? 'free'
          : html`held by <code id="lease-holder">${lease.holder ?? 'unknown'}</code>, expires
              <time>${lease.expires_at}</time> (in
              ${duration(lease.expires_in_ms)})${
                lease.holder_live
                  ? ''
                  : html` <span class="badge warn" id="lease-holder-gone"
                      >its worker is gone: clearing the lease is safe</span
                    >`
              }`,
      )}
    </table>
    <h3>Data</h3>
    ${preBlock('state-data', bidiSafeJson(JSON.stringify(shownData(v.data), null, 2)))}
  </section>`;
}

export function actionsCard(s: SessionSnapshot, flow: Flow | undefined): Html {
  const here = sessionHref(s);
  // The steps a handback may name: those the flow opens to it whose `needs` the session's data
  // has, then those whose missing data the agent can set (what they settled with the user).
  const open = flow ? [...flow.steps.values()].filter((d) => d.handback) : [];
  const steps = open.filter((d) => handbackOpen(d, s.data)).map((d) => d.id);
  // A key one field can hold (a string, number, true/false, one of a few values); a step that
  // needs a list or an object cannot be reached by hand-back, so it is not offered.
  const kindOf = (k: string): DataFieldKind => (flow && dataFieldKind(flow, k)) ?? { type: 'string' };
  const wanting = open
    .map((d) => ({ id: d.id, missing: missingNeeds(d, s.data) }))
    .filter((d) => d.missing.length > 0 && d.missing.every((k) => kindOf(k).type !== 'other'));
  const settable = [...new Set(wanting.flatMap((d) => d.missing))];
  // (Out of the template below: an option's text is what the agent reads, no line breaks in it.)
  const wantingOptions = wanting.map(
    (d) => html`<option value="${d.id}">${d.id} (needs ${d.missing.join(', ')})</option>`,
  );
  const chosen = s.step ?? flow?.start ?? '';
  const agent = agentOf(s);
  const upkeep = html`<div class="row">
    ${actionForm({ method: 'DELETE', url: api(`/sessions/${q(s.user)}/lock`, s), label: 'Clear lease', id: 'clear-lease', next: here })}
    <details class="confirm" id="reset">
      <summary>Reset session…</summary>
      <p>
        This clears the session's data and step; the user's next message starts the flow afresh. It is
        recorded as <code>admin_reset</code>, with your name when "Your name" says it.
      </p>
      ${actionForm({ method: 'POST', url: api(`/sessions/${q(s.user)}/reset`, s), label: 'Yes, reset this session', id: 'confirm-reset', next: here, cls: 'danger', agent: 'optional' })}
    </details>
  </div>`;
  // A group's session is a record: no agent takes it (the API refuses), and the bot answers
  // nothing there (outside test QA132-F2: the page offered "Take over" and said the bot served it).
  const shared = sharedChatKind(s.user);
  if (shared !== undefined)
    return html`<section class="card" id="actions" data-holder="">
      <h2>Actions</h2>
      ${upkeep}
      <h3>Agent</h3>
      <p id="agent-status">
        This is a ${SHARED_CHAT_NAMES[shared]}: Baton keeps what is said there as a record and answers
        nothing, so no agent takes it.
      </p>
    </section>`;
  return html`<section class="card" id="actions" data-holder="${agent ?? ''}">
    <h2>Actions</h2>
    ${upkeep}
    <h3>Agent</h3>
    ${
      s.needsAgent
        ? html`<p id="agent-status">
              ${agent ? html`Taken by <strong>${agent}</strong>. The bot is silent; the user's messages are recorded.` : "Waiting for an agent. The bot is silent; the user's messages are recorded."}
            </p>
            ${agent ? html`<p id="agent-mine" hidden>You have this session. The bot is silent; the user's messages are recorded.</p>` : ''}`
        : html`<p id="agent-status">
            The bot is serving this session. Taking it over stops the bot (recorded as
            <code>escalated</code>).
          </p>`
    }
    ${actionForm({
      method: 'POST',
      url: api(`/sessions/${q(s.user)}/agent`, s),
      // Taken by someone: taking it from them is said, and sent, explicitly.
      label: agent ? 'Take over from them' : s.needsAgent ? 'Take' : 'Take over',
      id: 'take',
      next: here,
      agent: true,
      // The version this page shows, when it shows the session waiting for an agent: one that
      // changed since (a colleague handed it back to the bot) is refused, not taken from the bot
      // unawares. Not when it shows the bot serving it: the agent means to take it from the bot,
      // and a user who kept writing made every take a 409 (outside test QA34-F4).
      // And whom it shows holding it: two agents taking it over at once are not both told they
      // have it.
      fields: html`${s.needsAgent ? html`<input type="hidden" name="version" value="${s.version}" />` : ''}<input
          type="hidden"
          name="from"
          value="${agent ?? ''}"
        />${agent ? html`<input type="hidden" name="take_over" value="true" />` : ''}`,
    })}
    ${
      s.needsAgent
        ? html`${actionForm({
            method: 'POST',
            url: api(`/sessions/${q(s.user)}/agent/messages`, s),
            label: 'Send to user',
            id: 'reply',
            next: here,
            cls: 'stack',
            agent: true,
            // No maxlength: it cuts pasted text silently, and counts UTF-16 units, not characters.
            // The script counts characters as the API does and refuses an over-long text.
            fields: html`<textarea
                name="text"
                rows="3"
                data-max-chars="${AGENT_TEXT_MAX}"
                data-enter-sends
                placeholder="Write to the user (Enter sends, Shift+Enter for a new line)"
                aria-label="Message to the user"
                aria-describedby="reply-count"
                required
              ></textarea
              ><span class="count" id="reply-count"
                >0 / ${AGENT_TEXT_MAX.toLocaleString('en-US')} characters</span
              >`,
          })}
          ${
            handbackElsewhere(s, flow) ??
            actionForm({
              method: 'DELETE',
              url: api(`/sessions/${q(s.user)}/agent`, s),
              label: 'Hand back to the bot',
              id: 'handback',
              next: here,
              agent: true,
              fields: html`<label
                  >at step
                  <select name="step" aria-label="Step to hand back at">
                    ${steps.map((id) => html`<option value="${id}" ${id === chosen ? ' selected' : ''}>${id}</option>`)}
                    ${
                      wanting.length > 0
                        ? html`<optgroup label="With data you set below">${wantingOptions}</optgroup>`
                        : ''
                    }
                  </select></label
                >${
                  settable.length > 0
                    ? html`<fieldset class="handback-data">
                        <legend>Data you settled with the user (empty: not set)</legend>
                        ${settable.map((k) => dataField(k, kindOf(k)))}
                      </fieldset>`
                    : ''
                }`,
            })
          }`
        : ''
    }
  </section>`;
}

/**
 * Instead of the hand-back form, for a session this process cannot hand back: one of a flow it does
 * not run, or written by a newer version of its flow (every step was refused with
 * `BATON_ERR_FLOW_NOT_SERVED_HERE`: outside test QA113-F3). Null when it can.
 */
function handbackElsewhere(s: SessionSnapshot, flow: Flow | undefined): Html | null {
  if (s.step === null) return null;
  const other =
    flow === undefined
      ? html`this process does not run flow <code>${s.flow}</code>`
      : notServedBy(flow, s) === 'newer_version'
        ? html`version ${s.flowVersion} of flow <code>${s.flow}</code> wrote it, and this process runs version
            ${flow.version}`
        : null;
  if (other === null) return null;
  return html`<p class="muted" id="handback-elsewhere">
    Hand back is not offered here: ${other}. Hand it back through a process that runs it (after a rollback,
    when none does: answer the user yourself, or reset the session).
  </p>`;
}

/** One field of the hand-back's data, as its kind takes it (`data-kind` tells the script how to send it). */
function dataField(key: string, kind: DataFieldKind): Html {
  const name = `data.${key}`;
  if (kind.type === 'boolean' || kind.type === 'enum') {
    const options: readonly string[] = kind.type === 'enum' ? kind.options : ['true', 'false'];
    return html`<label
      >${key}
      <select name="${name}" data-kind="${kind.type}">
        <option value="">(not set)</option>
        ${options.map((o) => html`<option value="${o}">${o}</option>`)}
      </select></label
    >`;
  }
  const type = kind.type === 'number' ? 'number' : 'text';
  return html`<label
    >${key}
    <input
      type="${type}"
      name="${name}"
      data-kind="${kind.type}"
      maxlength="4096"
      autocomplete="off"
      step="any"
  /></label>`;
}

/**
 * Characters (code points) of a message a conversation shows before the agent asks for the rest:
 * more than most messages hold, a few lines of a long one.
 */
const SHOWN_CHARS = 1_500;

/** How many characters (code points) `text` holds. */
function codePoints(text: string): number {
  let n = 0;
  for (let i = 0; i < text.length; n += 1) i += text.codePointAt(i)! > 0xffff ? 2 : 1;
  return n;
}

/**
 * A message's text, whitespace kept exactly (`white-space: pre-wrap`): built without the
 * `html` tag so that formatting this file cannot add whitespace inside it. `dir="auto"`: a
 * right-to-left text (Arabic, Hebrew) is laid out right to left.
 *
 * A text longer than {@link SHOWN_CHARS} shows its start, and the rest inside a closed
 * `<details>` that says how long the whole is: Chromium lays out none of a closed details'
 * content. A whole 65,536-character text (WhatsApp's limit) took 15 s to lay out and froze the
 * session page on each load (outside test QA64-F3). The start and the rest are both `.text`:
 * joined, they are the message. The cut splits no character as the user sees it (an emoji
 * sequence, a flag): each half would show a broken one.
 */
function textBlock(text: string): Html {
  const cut = wholeCharactersWithin(text, SHOWN_CHARS);
  if (cut === text.length) return raw('<div class="text" dir="auto">' + breakable(text) + '</div>');
  const total = codePoints(text);
  const shown = codePoints(text.slice(0, cut));
  const count = (n: number): string => n.toLocaleString('en-US');
  return raw(
    '<div class="text clipped" dir="auto">' +
      breakable(text.slice(0, cut)) +
      '</div><details class="rest"><summary>' +
      `Shortened: the first ${count(shown)} of ${count(total)} characters. Show the other ${count(total - shown)}` +
      '</summary><div class="text" dir="auto">' +
      breakable(text.slice(cut)) +
      '</div></details>',
  );
}

/**
 * A run of 32 characters with no space, ending where a user-perceived character may end: not
 * before a combining mark, a joiner, a variation selector or a skin tone, not after a joiner.
 */
const UNBROKEN = /\S{32}(?<!\u200d)(?=\S)(?!\p{M}|\u200d|\ufe0e|\ufe0f|\p{Emoji_Modifier})/gu;

/**
 * `text` escaped, with a line break opportunity (`<wbr>`, which adds no character to the text or
 * a copy of it) after every 32 characters of a run with no space. Without them Chromium took 3 to
 * 5 s to lay out a 65,536-letter word (the rest of one, opened), whatever the CSS
 * (`overflow-wrap: anywhere`, `word-break: break-word` or `break-all`); with them, under 0.1 s
 * (outside test QA64-F3).
 */
function breakable(text: string): string {
  let out = '';
  let from = 0;
  for (const m of text.matchAll(UNBROKEN)) {
    const to = m.index + m[0].length;
    out += escapeHtml(text.slice(from, to)) + '<wbr>';
    from = to;
  }
  return out + escapeHtml(text.slice(from));
}

const MEDIA_TYPES = new Set(['image', 'video', 'audio', 'document', 'sticker']);

/** A field of a message's payload, when it is a string (or a number, as text). */
function field(payload: unknown, key: string): string | undefined {
  const v =
    payload !== null && typeof payload === 'object' ? (payload as Record<string, unknown>)[key] : undefined;
  return typeof v === 'string' ? v : typeof v === 'number' ? String(v) : undefined;
}

/**
 * What a message says, in words an agent reads: its text; for media `image: <caption>` and its
 * link; a reaction, a location, a template or the buttons offered said as such. JSON only for
 * what has no words.
 */
export function describeMessage(m: { type: string; text?: string; payload?: unknown }): {
  text: string;
  link?: string;
} {
  const p = m.payload;
  const href = field(p, 'link') ?? field(p, 'url');
  const link = href !== undefined && /^https?:\/\//i.test(href) ? href : undefined;
  if (MEDIA_TYPES.has(m.type)) {
    const caption = m.text ?? field(p, 'caption');
    const name = field(p, 'filename');
    const words = [caption, name].filter((x) => x !== undefined && x !== '').join(' · ');
    const id = field(p, 'mediaId') ?? field(p, 'id');
    return {
      text: `${m.type}${words !== '' ? `: ${words}` : ''}${link === undefined && id !== undefined ? ` (media id ${id})` : ''}`,
      ...(link !== undefined ? { link } : {}),
    };
  }
  switch (m.type) {
    case 'reaction': {
      const emoji = field(p, 'emoji');
      const to = field(p, 'messageId');
      const what = to !== undefined ? ` to ${to}` : '';
      return { text: emoji ? `reacted ${emoji}${what}` : `removed a reaction${what}` };
    }
    case 'location': {
      const at = [field(p, 'latitude'), field(p, 'longitude')].filter((x) => x !== undefined).join(', ');
      const place = m.text ?? [field(p, 'name'), field(p, 'address')].filter(Boolean).join(', ');
      return { text: `location: ${[place, at !== '' ? `(${at})` : undefined].filter(Boolean).join(' ')}` };
    }
    case 'template': {
      const name = field(p, 'name');
      return { text: `template ${name ?? ''}${m.text !== undefined ? `: ${m.text}` : ''}` };
    }
    case 'buttons': {
      const buttons = (p as { buttons?: unknown } | undefined)?.buttons;
      const titles = Array.isArray(buttons) ? buttons.map((b) => field(b, 'title')).filter(Boolean) : [];
      return { text: `${m.text ?? ''}${titles.length > 0 ? `\n[${titles.join('] [')}]` : ''}` };
    }
    case 'list': {
      const button = field(p, 'button');
      return { text: `${m.text ?? ''}${button !== undefined ? `\n[${button}: a list]` : ''}` };
    }
    case 'contacts':
      return { text: `contacts shared (${field(p, 'count') ?? '?'})` };
    case 'order':
      return { text: `an order (${field(p, 'itemCount') ?? '?'} items)` };
    case 'edit':
      return { text: 'edited an earlier message' };
    case 'revoke':
      return { text: 'deleted an earlier message' };
    case 'deleted':
      return { text: `(${field(p, 'reason') ?? 'deleted'})` };
    case 'unsupported':
      return {
        text: `a message Baton cannot read (${[field(p, 'originalType'), field(p, 'reason')].filter(Boolean).join(': ')})`,
      };
  }
  if (m.text !== undefined) return { text: m.text };
  return { text: p !== undefined ? bidiSafeJson(JSON.stringify(p)) : `(${m.type})` };
}

/** What an outbound record carries, in words: an effect's name, or its body as the user gets it. */
function describeOutbound(o: OutboundRecord): string {
  if (o.effect !== undefined) return `effect ${o.effect.name} (run, not sent)`;
  const { type, ...rest } = o.body as { type: string; text?: unknown };
  return describeMessage({
    type,
    ...(typeof rest.text === 'string' ? { text: rest.text } : {}),
    payload: rest,
  }).text;
}

/**
 * The session's data as its page shows it: a text longer than {@link SHOWN_CHARS} is shortened,
 * saying how long it is. A flow stores what the user wrote whole (a 65,536-character name), and
 * laid out whole it froze the page as a long message did (outside test QA64-F3).
 */
function shownData(data: Readonly<Record<string, unknown>>): Record<string, unknown> {
  return Object.fromEntries(
    Object.entries(data).map(([k, v]) =>
      typeof v === 'string' && wholeCharactersWithin(v, SHOWN_CHARS) < v.length
        ? [
            k,
            `${clip(v, SHOWN_CHARS)} (${codePoints(v).toLocaleString('en-US')} characters; the API has them all)`,
          ]
        : [k, v],
    ),
  );
}

/**
 * What a dead letter holds, as text an agent reads before replaying it: the reply's text (or
 * the effect it starts), the user's message, or an unreadable item's JSON.
 */
export function letterContent(d: DeadLetter): string {
  try {
    if (d.kind === 'outbound') return describeOutbound(d.payload as OutboundRecord);
    if (d.kind === 'inbound') return describeMessage(inboundView(d.payload as StoredMessage)).text;
  } catch {
    // A letter stored in another shape: its JSON below.
  }
  return bidiSafeJson(JSON.stringify(d.payload) ?? '');
}

/**
 * A text in a table's cell: shortened to 140 characters (the ellipsis says so), a longer start
 * in its title, the whole on the session page. Whole, one 65,536-character message (WhatsApp's
 * limit) took 10 s to lay out in the inbox (outside test QA64-F3).
 */
export function shortCell(className: string, text: string): Html {
  return html`<td class="${className}" dir="auto" title="${clip(text, 1000)}">${clip(text, 140)}</td>`;
}

/** A dead letter's content for the overview's table: shortened, the longer text in its title. */
export function letterCell(d: DeadLetter): Html {
  return shortCell('content', letterContent(d));
}

function messageBody(m: ConversationItem): Html {
  const d = describeMessage(m);
  return html`${textBlock(d.text)}${d.link !== undefined ? html`<a class="media-link" href="${d.link}" rel="noopener noreferrer" target="_blank">${d.link}</a>` : ''}`;
}

/** Preformatted text (escaped), whitespace kept exactly. */
export function preBlock(id: string | null, text: string): Html {
  return raw(`<pre${id === null ? '' : ` id="${escapeHtml(id)}"`}>` + escapeHtml(text) + '</pre>');
}

/**
 * Which rows of a long history a session page shows: those before the newest `skip`, at most
 * `rows` of them; `older` when there are rows before those.
 */
export interface HistoryWindow {
  readonly skip: number;
  readonly rows: number;
  readonly older: boolean;
  /** ISO 8601: the moment paging back began; rows newer than it are left out. */
  readonly asOf?: string;
  /** The session page showing the rows before the newest `skip`. */
  readonly href: (skip: number) => string;
}

/** A whole history: nothing cut. */
const WHOLE: HistoryWindow = { skip: 0, rows: Number.POSITIVE_INFINITY, older: false, href: () => '' };

/** Where a cut list stands, with links to the newer and older rows. */
function pager(shown: number, w: HistoryWindow, api: string, id: string): Html {
  if (w.skip === 0 && !w.older) return html``;
  return html`<p class="muted pager" id="${id}-pager">
    ${
      w.skip === 0
        ? html`The newest ${shown}.`
        : html`${shown} older, before the newest
          ${w.skip}${w.asOf !== undefined ? html` as of <time>${w.asOf}</time>` : ''}.`
    }
    ${w.skip > 0 ? html`<a class="newer" href="${w.href(Math.max(0, w.skip - w.rows))}">Newer</a>` : ''}
    ${w.older ? html`<a class="older" href="${w.href(w.skip + w.rows)}">Older</a>` : ''}
    <code>${api}</code> has them all.
  </p>`;
}

/** What became of a user's message that was not applied to the flow, as its line in the conversation says. */
const NOT_APPLIED: Partial<Record<TransitionKind, readonly [label: string, why: string]>> = {
  late: ['late, not applied', 'sent before a message the session had already processed'],
  stale_input: ['stale, not applied', 'a button of an earlier step: answered with a notice'],
  held: ['held', 'the session waits for an agent: the bot answers nothing'],
  ignored: ['ignored', 'no input to the flow (a reaction, an edit, a notice...)'],
};

/**
 * For each message that a transition record names, the record's kind: the conversation marks
 * the ones not applied, so an agent sees why the bot did not answer them (outside test QA34-F6).
 */
export function messageOutcomes(records: readonly TransitionRecord[]): Map<string, TransitionKind> {
  const kinds = new Map<string, TransitionKind>();
  for (const r of records) for (const id of r.message_ids) kinds.set(id, r.kind);
  return kinds;
}

function outcomeBadge(m: ConversationItem, outcomes: ReadonlyMap<string, TransitionKind>): Html | '' {
  const kind = m.direction === 'in' ? outcomes.get(m.id) : undefined;
  const said = kind === undefined ? undefined : NOT_APPLIED[kind];
  if (said === undefined) return '';
  return html`<span class="badge not-applied kind-${kind}" title="${said[1]}">${said[0]}</span>`;
}

/** A message read this late (ms) is marked as such in the conversation: its process was stalled. */
const READ_LATE_SHOWN_MS = 500;

/**
 * Whether a user's message was sent a minute or more before (or after) Baton stored it: its
 * own time is shown too, as a late message's storage time alone hid when the user wrote it
 * (outside test QA87-F7).
 */
function sentLong(m: ConversationItem): m is ConversationItem & { sent_at: string } {
  return m.sent_at !== undefined && Math.abs(Date.parse(m.at) - Date.parse(m.sent_at)) >= 60_000;
}

export function conversationCard(
  items: readonly ConversationItem[],
  window: HistoryWindow = WHOLE,
  outcomes: ReadonlyMap<string, TransitionKind> = new Map(),
): Html {
  return html`<section class="card" id="conversation">
    <h2>Conversation</h2>
    ${pager(items.length, window, 'GET /admin/api/sessions/:waId/messages', 'conversation')}
    ${items.length === 0 ? html`<p class="muted">No messages.</p>` : ''}
    <ol class="chat">
      ${items.map(
        (m) =>
          html`<li class="msg ${m.direction}${m.kind ? ` ${m.kind}` : ''}" data-id="${m.id}">
            <div class="meta">
              <span class="who"
                >${m.direction === 'out' ? (m.kind === 'agent' ? 'Agent' : 'Bot') : m.type === 'event' ? 'Event' : 'User'}</span
              >
              <span class="type">${m.type}</span>
              <time>${m.at}</time>
              ${sentLong(m) ? html`<span class="sent-at muted">(sent <time>${m.sent_at}</time>)</span>` : ''}
              ${m.clock_ahead === true ? html`<span class="sent-at muted">(the phone's clock was ahead: stored time used)</span>` : ''}
              ${(m.read_late_ms ?? 0) >= READ_LATE_SHOWN_MS ? html`<span class="sent-at muted">(read ${m.read_late_ms} ms late: Baton was stalled)</span>` : ''}
              ${m.status ? statusBadge(m.status, m.error) : ''} ${outcomeBadge(m, outcomes)}
            </div>
            ${messageBody(m)}
            ${
              (m.direction === 'out' || m.type === 'event') && m.payload !== undefined
                ? html`<details>
                    <summary>payload</summary>
                    ${preBlock(null, bidiSafeJson(JSON.stringify(m.payload, null, 2)))}
                  </details>`
                : ''
            }
            <div class="id">
              <code>${m.wamid ?? m.id}</code>${
                m.error === undefined
                  ? ''
                  : m.status === 'failed'
                    ? html` <span class="error">${m.error}</span>`
                    : html` <span class="muted prior-error">retrying after: ${m.error}</span>`
              }
            </div>
          </li>`,
      )}
    </ol>
  </section>`;
}

/** A transition's message id; an effect's result (`fx:<effect id>`) is said to be one. */
function messageId(id: string): Html {
  return id.startsWith('fx:')
    ? html`<code>${id}</code> <span class="muted">(effect result)</span> `
    : html`<code>${id}</code> `;
}

export function timelineCard(records: readonly TransitionRecord[], window: HistoryWindow = WHOLE): Html {
  return html`<section class="card" id="timeline">
    <h2>Timeline</h2>
    ${pager(records.length, window, 'GET /admin/api/sessions/:waId/transitions', 'timeline')}
    <div class="table-wrap">
      <table class="grid">
        <thead>
          <tr>
            <th>Version</th>
            <th>Kind</th>
            <th>From</th>
            <th>To</th>
            <th>Message ids</th>
            <th>At</th>
            <th>Worker</th>
            <th>Fence</th>
          </tr>
        </thead>
        <tbody>
          ${records.map(
            (r) =>
              html`<tr
                class="kind-${r.kind}${MARKED_KINDS.has(r.kind) ? ' marked' : ''}"
                data-kind="${r.kind}"
              >
                <td>${r.version}</td>
                <td><span class="badge kind">${r.kind}</span></td>
                <td>${r.from_step ?? '-'}</td>
                <td>${r.to_step ?? '-'}</td>
                <td>${r.message_ids.map(messageId)}</td>
                <td><time>${r.at}</time></td>
                <td><code>${r.worker}</code></td>
                <td>${r.fencing_token}</td>
              </tr>`,
          )}
        </tbody>
      </table>
    </div>
  </section>`;
}

/** An effect's progress, in words: its outbound status says whether it ran, not a delivery. */
const EFFECT_STATUS: Readonly<Partial<Record<OutboundStatus, string>>> = {
  pending: 'to run',
  sending: 'running',
  sent: 'done: result stored',
  failed: 'failed',
};

/**
 * A reply's status badge. A failed one that may have reached the user (an attempt without an
 * answer: see mayHaveReached) says so: it is no proof the user lacks it.
 */
function statusBadge(status: OutboundStatus, lastError: string | undefined): Html {
  return mayHaveReached(status, lastError)
    ? html`<span
        class="badge status-uncertain"
        title="failed: an attempt got no answer, so the user may have it; not sent again"
        >may have reached</span
      >`
    : html`<span class="badge status-${status}">${status}</span>`;
}

/**
 * A warning atop a session's page when replies of it failed: the user did not get them; or, for
 * those an attempt of which got no answer, may have (an agent checks before replaying them).
 */
export function failedNotice(outbound: readonly OutboundRecord[]): Html {
  const failed = outbound.filter((o) => o.status === 'failed' && o.effect === undefined);
  if (failed.length === 0) return html``;
  const unsure = failed.filter((o) => mayHaveReached(o.status, o.lastError));
  const lost = failed.filter((o) => !unsure.includes(o));
  const count = (n: number) => `${n} ${n === 1 ? 'reply' : 'replies'}`;
  return html`<p class="error" id="failed-deliveries">
    ${
      lost.length === 0
        ? ''
        : html`${count(lost.length)} to this user failed: they did not get
            ${lost.length === 1 ? 'it' : 'them'} (newest:
            <q dir="auto">${clip(describeOutbound(lost.at(-1)!), 80)}</q>).`
    }
    ${
      unsure.length === 0
        ? ''
        : html`${count(unsure.length)} to this user may have reached them: an attempt got no answer, and
            ${unsure.length === 1 ? 'it was' : 'they were'} not sent again (newest:
            <q dir="auto">${clip(describeOutbound(unsure.at(-1)!), 80)}</q>); ask the user before replaying.`
    }
    See <a href="#outbound">Outbound messages</a>.
  </p>`;
}

/**
 * The overview's list of replies whose delivery failed (newest first): who did not get what, and
 * why, each linked to its session.
 */
export function failedRepliesCard(failed: readonly FailedReply[]): Html {
  return html`<section class="card" id="failed-replies">
    <h2>Failed replies</h2>
    ${
      failed.length === 0
        ? html`<p class="muted">None.</p>`
        : html`<p class="muted">
              Replies the users did not get (Meta reported them failed, or Baton gave up), newest first; those
              marked <span class="badge status-uncertain">may have reached</span> got no answer for two
              attempts, and the user may have them: ask before replaying.
            </p>
            <div class="table-wrap">
              <table class="grid">
                <thead>
                  <tr>
                    <th>Failed</th>
                    <th>Committed</th>
                    <th>Session</th>
                    <th>Step</th>
                    <th>Reply</th>
                    <th>Error</th>
                  </tr>
                </thead>
                <tbody>
                  ${failed.map(
                    (o) =>
                      html`<tr data-id="${o.id}">
                        <td>
                          <time>${new Date(o.failedAt).toISOString()}</time>
                          ${mayHaveReached('failed', o.lastError) ? statusBadge('failed', o.lastError) : ''}
                        </td>
                        <td><time>${new Date(o.createdAt).toISOString()}</time></td>
                        <td><a href="${sessionHref(o)}">${o.user}</a></td>
                        <td><code>${o.step}</code></td>
                        <td class="content" dir="auto">${clip(describeOutbound(o), 140)}</td>
                        <td>${o.lastError ?? ''}</td>
                      </tr>`,
                  )}
                </tbody>
              </table>
            </div>`
    }
  </section>`;
}

/**
 * A reply's last error as it stands now: the reason it failed; while it is retried, why; once it
 * got through, muted, as what it got through after (a throttle is not a failure).
 */
function replyError(o: OutboundRecord): Html | string {
  if (o.lastError === undefined) return '';
  if (o.status === 'failed') return o.lastError;
  const unsent = o.status === 'pending' || o.status === 'sending';
  return html`<span class="muted prior-error"
    >${unsent ? 'retrying after' : 'got through after'}: ${o.lastError}</span
  >`;
}

/** An effect's result as the session's mailbox got it, and what the session did with it. */
export interface EffectOutcome {
  readonly ok: boolean;
  readonly value?: unknown;
  readonly error?: string;
  /** The transition that took it: `stale_input` when the session had moved on (not applied). */
  readonly kind?: string;
}

/** Each effect's outcome, by effect id, from the session's inbound messages and transitions. */
export function effectOutcomes(
  inbound: readonly StoredMessage[],
  records: readonly TransitionRecord[],
): Map<string, EffectOutcome> {
  const kinds = new Map<string, string>();
  for (const r of records) for (const id of r.message_ids) kinds.set(id, r.kind);
  const out = new Map<string, EffectOutcome>();
  for (const m of inbound) {
    const c = m.content;
    if (c.type !== 'effect_result') continue;
    const kind = kinds.get(m.id);
    out.set(c.effectId, {
      ok: c.ok,
      ...(c.value !== undefined ? { value: c.value } : {}),
      ...(c.error !== undefined ? { error: c.error } : {}),
      ...(kind !== undefined ? { kind } : {}),
    });
  }
  return out;
}

function outcomeCell(o: EffectOutcome | undefined): Html {
  if (o === undefined) return html`<span class="muted">no result yet</span>`;
  const applied =
    o.kind === undefined
      ? 'not taken yet'
      : o.kind === 'stale_input'
        ? 'not applied: the session had moved on (an agent took it, or it left the step)'
        : `applied (${o.kind})`;
  return html`<details class="effect-result">
    <summary>${o.ok ? 'result' : 'failed'}: ${applied}</summary>
    ${preBlock(null, o.ok ? bidiSafeJson(JSON.stringify(o.value ?? null, null, 2)) : (o.error ?? ''))}
  </details>`;
}

export function outboundCard(
  records: readonly OutboundRecord[],
  window: HistoryWindow = WHOLE,
  outcomes: ReadonlyMap<string, EffectOutcome> = new Map(),
): Html {
  return html`<section class="card" id="outbound">
    <h2>Outbound messages</h2>
    <p class="muted">
      Replies to the user, and effects a step started (a lookup, for instance): effects are run, not sent.
    </p>
    ${pager(records.length, window, 'GET /admin/api/sessions/:waId/outbound', 'outbound')}
    <div class="table-wrap">
      <table class="grid">
        <thead>
          <tr>
            <th>#</th>
            <th>Created</th>
            <th>Step</th>
            <th>Version</th>
            <th>Type</th>
            <th>Status</th>
            <th>Attempts</th>
            <th>wamid</th>
            <th>Callback data</th>
            <th>Error / result</th>
          </tr>
        </thead>
        <tbody>
          ${records.map((o) =>
            o.effect !== undefined
              ? html`<tr class="status-${o.status} effect" data-status="${o.status}" data-kind="effect">
                  <td>${o.seq}</td>
                  <td><time>${new Date(o.createdAt).toISOString()}</time></td>
                  <td>${o.step}</td>
                  <td>${o.version}</td>
                  <td>effect <strong>${o.effect.name}</strong></td>
                  <td>
                    <span class="badge effect-${o.status}">${EFFECT_STATUS[o.status] ?? o.status}</span>
                  </td>
                  <td>${o.attempts}</td>
                  <td>-</td>
                  <td>key <code>${o.effect.id}</code></td>
                  <td>${o.lastError ?? ''} ${outcomeCell(outcomes.get(o.effect.id))}</td>
                </tr>`
              : html`<tr class="status-${o.status}" data-status="${o.status}" data-kind="reply">
                  <td>${o.seq}</td>
                  <td><time>${new Date(o.createdAt).toISOString()}</time></td>
                  <td>${o.step}</td>
                  <td>${o.version}</td>
                  <td>${o.body.type}</td>
                  <td>${statusBadge(o.status, o.lastError)}</td>
                  <td>${o.attempts}</td>
                  <td><code>${o.providerMessageId ?? '-'}</code></td>
                  <td><code>${o.callbackData}</code></td>
                  <td>${replyError(o)}</td>
                </tr>`,
          )}
        </tbody>
      </table>
    </div>
  </section>`;
}
