/**
 * The support dashboard at `/admin` (SPEC section 4): server-rendered pages plus one small
 * script and one stylesheet from `./assets/`, nothing from a CDN. Signing in with the admin
 * token sets the `baton_admin` cookie (`HttpOnly; SameSite=Strict`); the pages' actions call
 * the admin JSON API with the page's CSRF token in `X-Baton-CSRF`. Every value shown is
 * escaped (`./html.ts`); pages carry a strict Content-Security-Policy.
 * @module
 */
import { readFileSync } from 'node:fs';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { agentOf } from '../flow/agent.ts';
import { toMermaid, type Flow } from '../flow/define.ts';
import {
  toSessionView,
  type OutboundRecord,
  type SessionSnapshot,
  type TransitionRecord,
} from '../model/session.ts';
import type { AdminDeps } from './api.ts';
import { isSecure, type AdminAuth } from './auth.ts';
import { conversationPage, type ConversationItem } from './conversation.ts';
import { flowPicture } from './flow-picture.ts';
import { escapeHtml, html, raw, type Html } from './html.ts';
import { inboxPage, leaseView, scan, stepCounts } from './reads.ts';
import { SignInBody } from './schemas.ts';

const ASSETS = new URL('./assets/', import.meta.url);
const SCRIPT = readFileSync(new URL('dashboard.js', ASSETS), 'utf8');
const STYLE = readFileSync(new URL('dashboard.css', ASSETS), 'utf8');

const CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "form-action 'self'",
  "frame-ancestors 'none'",
  "base-uri 'none'",
].join('; ');

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

const q = encodeURIComponent;

/** A duration for people: `850ms`, `42s`, `3m 12s`, `5h 2m`, `2d 4h`. */
export function duration(ms: number): string {
  if (ms < 1000) return `${Math.max(0, Math.round(ms))}ms`;
  const s = Math.floor(ms / 1000);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
  if (s < 86_400) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
  return `${Math.floor(s / 86_400)}d ${Math.floor((s % 86_400) / 3600)}h`;
}

function sessionHref(s: { user: string; channel: string }): string {
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

function layout(p: Page): string {
  return html`<!doctype html>
    <html lang="en">
      <head>
        <meta charset="utf-8" />
        <meta name="viewport" content="width=device-width, initial-scale=1" />
        <meta name="baton-csrf" content="${p.csrf}" />
        <title>${p.title} · Baton</title>
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
          <form class="api signout" data-method="POST" data-url="/admin/logout" data-next="/admin">
            <button type="submit">Sign out</button>
          </form>
        </header>
        <main>
          <h1>${p.title}</h1>
          ${p.body}
        </main>
      </body>
    </html> `.value;
}

function signInPage(error?: string): string {
  return html`<!doctype html>
    <html lang="en">
      <head>
        <meta charset="utf-8" />
        <meta name="viewport" content="width=device-width, initial-scale=1" />
        <title>Sign in · Baton</title>
        <link rel="stylesheet" href="/admin/assets/dashboard.css" />
      </head>
      <body class="signin">
        <main>
          <h1>Baton</h1>
          <form method="post" action="/admin/login" class="card" id="signin">
            <label for="token">Admin token</label>
            <input
              type="password"
              id="token"
              name="token"
              autocomplete="current-password"
              required
              autofocus
            />
            ${error ? html`<p class="error" role="alert">${error}</p>` : ''}
            <button type="submit">Sign in</button>
          </form>
        </main>
      </body>
    </html> `.value;
}

function actionForm(opts: {
  method: string;
  url: string;
  label: string;
  id?: string;
  next?: string;
  cls?: string;
  fields?: Html;
}): Html {
  return html`<form
    class="api ${opts.cls ?? ''}"
    data-method="${opts.method}"
    data-url="${opts.url}"
    ${opts.next ? html` data-next="${opts.next}"` : ''}${opts.id ? html` id="${opts.id}"` : ''}
  >
    ${opts.fields ?? ''}<button type="submit">${opts.label}</button>
    <span class="error" role="alert"></span>
  </form>`;
}

function stateCard(s: SessionSnapshot, lease: ReturnType<typeof leaseView>): Html {
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
      ${row('Flow', 'state-flow', v.flow)} ${row('Step', 'state-step', v.current_step ?? '(none)')}
      ${row('Version', 'state-version', v.metadata.version)}
      ${row('Retry count', 'state-retry-count', v.metadata.retry_count)}
      ${row('Needs agent', 'state-needs-agent', v.metadata.needs_agent ? html`<span class="badge warn">yes</span>${agent ? html` taken by <strong>${agent}</strong>` : ''}` : 'no')}
      ${row('Last interaction', 'state-last-interaction', v.metadata.last_interaction ?? '-')}
      ${row('Last message id', 'state-last-message-id', v.metadata.last_message_id ?? '-')}
      ${row('Created', 'state-created', v.metadata.created_at)}
      ${row(
        'Lease',
        'state-lease',
        lease === null
          ? 'free'
          : html`held by <code id="lease-holder">${lease.holder ?? 'unknown'}</code>, expires
              ${lease.expires_at} (in ${duration(lease.expires_in_ms)})`,
      )}
    </table>
    <h3>Data</h3>
    ${preBlock('state-data', JSON.stringify(v.data, null, 2))}
  </section>`;
}

function actionsCard(s: SessionSnapshot, flow: Flow | undefined): Html {
  const here = sessionHref(s);
  const steps = flow ? [...flow.steps.keys()] : [];
  const chosen = s.step ?? flow?.start ?? '';
  const agent = agentOf(s);
  return html`<section class="card" id="actions">
    <h2>Actions</h2>
    <div class="row">
      ${actionForm({ method: 'DELETE', url: api(`/sessions/${q(s.user)}/lock`, s), label: 'Clear lease', id: 'clear-lease', next: here })}
      <details class="confirm" id="reset">
        <summary>Reset session…</summary>
        <p>
          This clears the session's data and step; the user's next message starts the flow afresh. It is
          recorded as <code>admin_reset</code>.
        </p>
        ${actionForm({ method: 'POST', url: api(`/sessions/${q(s.user)}/reset`, s), label: 'Yes, reset this session', id: 'confirm-reset', next: here, cls: 'danger' })}
      </details>
    </div>
    <h3>Agent</h3>
    ${
      s.needsAgent
        ? html`<p id="agent-status">
            ${agent ? html`Taken by <strong>${agent}</strong>. The bot is silent; the user's messages are recorded.` : "Waiting for an agent. The bot is silent; the user's messages are recorded."}
          </p>`
        : html`<p id="agent-status">
            The bot is serving this session. Taking it over stops the bot (recorded as
            <code>escalated</code>).
          </p>`
    }
    ${actionForm({
      method: 'POST',
      url: api(`/sessions/${q(s.user)}/agent`, s),
      label: s.needsAgent ? 'Take' : 'Take over',
      id: 'take',
      next: here,
      fields: html`<input
        name="agent"
        placeholder="Your name"
        aria-label="Agent name"
        required
        maxlength="100"
        value="${agent ?? ''}"
      />`,
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
            fields: html`<textarea
              name="text"
              rows="3"
              maxlength="4096"
              placeholder="Write to the user"
              aria-label="Message to the user"
              required
            ></textarea>`,
          })}
          ${actionForm({
            method: 'DELETE',
            url: api(`/sessions/${q(s.user)}/agent`, s),
            label: 'Hand back to the bot',
            id: 'handback',
            next: here,
            fields: html`<label
              >at step
              <select name="step" aria-label="Step to hand back at">
                ${steps.map((id) => html`<option value="${id}" ${id === chosen ? ' selected' : ''}>${id}</option>`)}
              </select></label
            >`,
          })}`
        : ''
    }
  </section>`;
}

/**
 * A message's text, whitespace kept exactly (`white-space: pre-wrap`): built without the
 * `html` tag so that formatting this file cannot add whitespace inside it.
 */
function textBlock(text: string): Html {
  return raw('<div class="text">' + escapeHtml(text) + '</div>');
}

/** Preformatted text (escaped), whitespace kept exactly. */
function preBlock(id: string | null, text: string): Html {
  return raw(`<pre${id === null ? '' : ` id="${escapeHtml(id)}"`}>` + escapeHtml(text) + '</pre>');
}

function conversationCard(items: readonly ConversationItem[]): Html {
  return html`<section class="card" id="conversation">
    <h2>Conversation</h2>
    ${items.length === 0 ? html`<p class="muted">No messages.</p>` : ''}
    <ol class="chat">
      ${items.map(
        (m) =>
          html`<li class="msg ${m.direction}${m.kind ? ` ${m.kind}` : ''}" data-id="${m.id}">
            <div class="meta">
              <span class="who">${m.direction === 'in' ? 'User' : m.kind === 'agent' ? 'Agent' : 'Bot'}</span>
              <span class="type">${m.type}</span>
              <time>${m.at}</time>
              ${m.status ? html`<span class="badge status-${m.status}">${m.status}</span>` : ''}
            </div>
            ${textBlock(m.text ?? (m.payload !== undefined ? JSON.stringify(m.payload) : `(${m.type})`))}
            ${
              m.direction === 'out' && m.payload !== undefined
                ? html`<details>
                    <summary>payload</summary>
                    ${preBlock(null, JSON.stringify(m.payload, null, 2))}
                  </details>`
                : ''
            }
            <div class="id">
              <code>${m.wamid ?? m.id}</code>${m.error ? html` <span class="error">${m.error}</span>` : ''}
            </div>
          </li>`,
      )}
    </ol>
  </section>`;
}

function timelineCard(records: readonly TransitionRecord[]): Html {
  return html`<section class="card" id="timeline">
    <h2>Timeline</h2>
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
            html`<tr class="kind-${r.kind}${MARKED_KINDS.has(r.kind) ? ' marked' : ''}" data-kind="${r.kind}">
              <td>${r.version}</td>
              <td><span class="badge kind">${r.kind}</span></td>
              <td>${r.from_step ?? '-'}</td>
              <td>${r.to_step ?? '-'}</td>
              <td>${r.message_ids.map((id) => html`<code>${id}</code> `)}</td>
              <td><time>${r.at}</time></td>
              <td><code>${r.worker}</code></td>
              <td>${r.fencing_token}</td>
            </tr>`,
        )}
      </tbody>
    </table>
  </section>`;
}

function outboundCard(records: readonly OutboundRecord[]): Html {
  return html`<section class="card" id="outbound">
    <h2>Outbound messages</h2>
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
          <th>Error</th>
        </tr>
      </thead>
      <tbody>
        ${records.map(
          (o) =>
            html`<tr class="status-${o.status}" data-status="${o.status}">
              <td>${o.seq}</td>
              <td><time>${new Date(o.createdAt).toISOString()}</time></td>
              <td>${o.step}</td>
              <td>${o.version}</td>
              <td>${o.body.type}</td>
              <td><span class="badge status-${o.status}">${o.status}</span></td>
              <td>${o.attempts}</td>
              <td><code>${o.providerMessageId ?? '-'}</code></td>
              <td><code>${o.callbackData}</code></td>
              <td>${o.lastError ?? ''}</td>
            </tr>`,
        )}
      </tbody>
    </table>
  </section>`;
}

export function registerDashboard(
  app: FastifyInstance,
  deps: AdminDeps & { readonly now?: () => number },
  auth: AdminAuth,
): void {
  const { backend, flows } = deps;
  const now = deps.now ?? Date.now;

  void app.register(
    async (dash) => {
      dash.addContentTypeParser(
        'application/x-www-form-urlencoded',
        { parseAs: 'string', bodyLimit: 8192 },
        (_req, body, done) => {
          done(
            null,
            Object.fromEntries(new URLSearchParams(typeof body === 'string' ? body : body.toString())),
          );
        },
      );
      dash.addHook('onSend', async (_req, reply, payload) => {
        reply.header('content-security-policy', CSP);
        reply.header('x-content-type-options', 'nosniff');
        reply.header('referrer-policy', 'no-referrer');
        reply.header('x-frame-options', 'DENY');
        reply.header('cache-control', 'no-store');
        return payload;
      });

      /** The signed-in cookie, or null after answering (sign-in page or redirect). */
      const signedIn = (req: FastifyRequest): string | null => auth.sessionOf(req);
      const page = (reply: FastifyReply, cookie: string, title: string, body: Html, status = 200) =>
        reply
          .code(status)
          .type('text/html; charset=utf-8')
          .send(layout({ title, csrf: auth.csrfFor(cookie), flows, body }));
      const toSignIn = (reply: FastifyReply) => reply.code(303).header('location', '/admin').send();

      dash.get('/assets/dashboard.js', async (_req, reply) =>
        reply.type('text/javascript; charset=utf-8').send(SCRIPT),
      );
      dash.get('/assets/dashboard.css', async (_req, reply) =>
        reply.type('text/css; charset=utf-8').send(STYLE),
      );

      dash.post('/login', async (req, reply) => {
        const body = SignInBody.safeParse(req.body);
        if (!body.success || !auth.tokenMatches(body.data.token)) {
          return reply
            .code(401)
            .type('text/html; charset=utf-8')
            .send(signInPage('That token is not right.'));
        }
        return reply
          .code(303)
          .header('set-cookie', auth.cookieHeader(auth.newSession(), isSecure(req)))
          .header('location', '/admin')
          .send();
      });

      dash.post('/logout', async (req, reply) => {
        const caller = auth.caller(req);
        if (caller !== null && !auth.csrfOk(req, caller)) {
          return reply.code(403).send({ error: 'Missing or invalid CSRF token', code: 'BATON_ERR_CSRF' });
        }
        return reply
          .code(200)
          .header('set-cookie', auth.cookieHeader('', isSecure(req)))
          .send({ signed_out: true });
      });

      dash.get('/', async (req, reply) => {
        const cookie = signedIn(req);
        if (cookie === null) return reply.type('text/html; charset=utf-8').send(signInPage());
        const [stats, dead, inbox] = await Promise.all([
          backend.stats(),
          backend.listDeadLetters(50),
          inboxPage(backend, now(), 5),
        ]);
        const stat = (id: string, label: string, value: string | number) =>
          html`<div class="stat" id="stat-${id}">
            <div class="value">${value}</div>
            <div class="label">${label}</div>
          </div>`;
        const body = html`<section class="stats" id="stats">
            ${stat('queue-depth', 'queue depth', stats.queueDepth)}
            ${stat('oldest-pending', 'oldest pending', duration(stats.oldestPendingMs))}
            ${stat('throughput', 'messages / s (last minute)', deps.messagesPerSecond())}
            ${stat('workers', 'live workers', stats.workers)} ${stat('locks', 'leases held', stats.locksHeld)}
            ${stat('dead-letters', 'dead letters', stats.deadLetters)}
          </section>
          <section class="card" id="inbox-summary">
            <h2>Inbox</h2>
            <p>
              <a href="/admin/inbox"
                >${inbox.total} session${inbox.total === 1 ? '' : 's'} waiting for an agent</a
              >
            </p>
          </section>
          <section class="card" id="flows">
            <h2>Flows</h2>
            <ul>
              ${[...flows.values()].map((f) => html`<li><a href="/admin/flows/${q(f.id)}">${f.id}</a> (version ${f.version}, ${f.steps.size} steps)</li>`)}
            </ul>
          </section>
          <section class="card" id="dead-letters">
            <h2>Dead letters</h2>
            ${dead.length === 0 ? html`<p class="muted">None.</p>` : ''}
            <table class="grid">
              <thead>
                <tr>
                  <th>Created</th>
                  <th>Kind</th>
                  <th>Session</th>
                  <th>Ref</th>
                  <th>Reason</th>
                  <th></th>
                </tr>
              </thead>
              <tbody>
                ${dead.map(
                  (d) =>
                    html`<tr data-id="${d.id}">
                      <td><time>${new Date(d.createdAt).toISOString()}</time></td>
                      <td>${d.kind}</td>
                      <td><a href="${sessionHref(d)}">${d.user}</a></td>
                      <td><code>${d.ref}</code></td>
                      <td>${d.reason}</td>
                      <td>
                        ${d.replayedAt !== undefined ? html`replayed ${new Date(d.replayedAt).toISOString()}` : actionForm({ method: 'POST', url: `/admin/api/dead-letters/${q(d.id)}/replay`, label: 'Replay', next: '/admin', cls: 'replay' })}
                      </td>
                    </tr>`,
                )}
              </tbody>
            </table>
          </section>`;
        return page(reply, cookie, 'Overview', body);
      });

      dash.get('/session', async (req, reply) => {
        const cookie = signedIn(req);
        if (cookie === null) return toSignIn(reply);
        const query = req.query as Record<string, unknown>;
        const waId = typeof query.wa_id === 'string' ? query.wa_id.trim() : '';
        const channel = typeof query.channel === 'string' && query.channel !== '' ? query.channel : undefined;
        if (
          !/^[A-Za-z0-9._:+@-]{1,128}$/.test(waId) ||
          (channel !== undefined && !/^[A-Za-z0-9._:+@-]{1,128}$/.test(channel))
        ) {
          return page(
            reply,
            cookie,
            'Find a session',
            html`<p class="error" id="not-found">"${waId}" is not a WhatsApp number or user id.</p>`,
            400,
          );
        }
        const found = await backend.findSessions(waId, channel);
        if (found.length === 0) {
          return page(
            reply,
            cookie,
            'Find a session',
            html`<p class="error" id="not-found">
              No session for <code>${waId}</code>${channel ? html` on channel <code>${channel}</code>` : ''}.
            </p>`,
            404,
          );
        }
        if (found.length > 1) {
          return page(
            reply,
            cookie,
            'Several sessions',
            html`<p>This user writes to several business numbers. Choose one:</p>
              <ul id="channels">
                ${found.map((s) => html`<li><a href="${sessionHref(s)}">${s.channel}</a> at ${s.step ?? '(none)'}</li>`)}
              </ul>`,
          );
        }
        const s = found[0]!;
        const [lease, records, outbound, inbound] = await Promise.all([
          backend.leaseInfo(s),
          backend.transitions(s),
          backend.outbound(s),
          backend.inbound(s),
        ]);
        const conv = conversationPage(inbound, outbound, 10_000);
        const body = html`<p class="sub">
            User <code id="session-user">${s.waId ?? s.user}</code> on channel <code>${s.channel}</code>
          </p>
          <div class="columns">
            <div>${stateCard(s, leaseView(lease, now()))}${actionsCard(s, flows.get(s.flow))}</div>
            <div>${conversationCard(conv.messages)}</div>
          </div>
          ${timelineCard(records)} ${outboundCard(outbound)}`;
        return page(reply, cookie, `Session ${s.waId ?? s.user}`, body);
      });

      dash.get('/inbox', async (req, reply) => {
        const cookie = signedIn(req);
        if (cookie === null) return toSignIn(reply);
        const inbox = await inboxPage(backend, now(), 500);
        const body = html`<p class="sub">
            Sessions waiting for an agent, longest waiting first. While one waits, the bot is silent and the
            user's messages are recorded.
          </p>
          <table class="grid" id="inbox">
            <thead>
              <tr>
                <th>User</th>
                <th>Channel</th>
                <th>Flow</th>
                <th>Step</th>
                <th>Waiting</th>
                <th>Since</th>
                <th>Agent</th>
              </tr>
            </thead>
            <tbody>
              ${inbox.sessions.map(
                (s) =>
                  html`<tr data-wa-id="${s.wa_id}">
                    <td><a href="${sessionHref({ user: s.wa_id, channel: s.channel })}">${s.wa_id}</a></td>
                    <td>${s.channel}</td>
                    <td>${s.flow}</td>
                    <td>${s.current_step ?? '-'}</td>
                    <td>${duration(s.waiting_ms)}</td>
                    <td><time>${s.waiting_since}</time></td>
                    <td>${s.agent ?? html`<span class="muted">nobody yet</span>`}</td>
                  </tr>`,
              )}
            </tbody>
          </table>
          ${inbox.sessions.length === 0 ? html`<p class="muted" id="inbox-empty">Nobody is waiting.</p>` : ''}`;
        return page(reply, cookie, 'Inbox', body);
      });

      dash.get('/flows/:id', async (req, reply) => {
        const cookie = signedIn(req);
        if (cookie === null) return toSignIn(reply);
        const flow = flows.get((req.params as { id: string }).id);
        if (!flow) return page(reply, cookie, 'No such flow', html`<p class="error">No such flow.</p>`, 404);
        const query = req.query as Record<string, unknown>;
        const step = typeof query.step === 'string' && flow.steps.has(query.step) ? query.step : undefined;
        const t = now();
        const counts = await stepCounts(backend, flow, t);
        const href = (id: string): string => `/admin/flows/${q(flow.id)}?step=${q(id)}#sessions`;
        const picture = flowPicture(flow, counts, href);
        const here = step ? (await scan(backend, { step })).filter((s) => s.flow === flow.id) : [];
        const body = html`<p class="sub">
            Live counts per step: sessions at each step now, and how long the longest has waited there since
            the user last wrote. Click a step to list its sessions.
          </p>
          ${picture}
          <table class="grid" id="step-counts">
            <thead>
              <tr>
                <th>Step</th>
                <th>Sessions</th>
                <th>Longest waiting</th>
              </tr>
            </thead>
            <tbody>
              ${[...flow.steps.keys()].map(
                (id) =>
                  html`<tr data-step="${id}">
                    <td><a href="${href(id)}">${id}</a></td>
                    <td class="n">${counts[id]?.sessions ?? 0}</td>
                    <td>${counts[id]?.oldestMs !== undefined ? duration(counts[id].oldestMs) : '-'}</td>
                  </tr>`,
              )}
            </tbody>
          </table>
          ${
            step
              ? html`<section class="card" id="sessions">
                  <h2>Sessions at <code>${step}</code></h2>
                  <ul id="step-sessions">
                    ${here.map((s) => html`<li><a href="${sessionHref(s)}">${s.waId ?? s.user}</a> <span class="muted">channel ${s.channel}, version ${s.version}, waiting ${duration(Math.max(0, t - (s.lastInteraction ?? s.createdAt / 1000) * 1000))}</span></li>`)}
                  </ul>
                  ${here.length === 0 ? html`<p class="muted">None.</p>` : ''}
                </section>`
              : ''
          }
          <details>
            <summary>Mermaid</summary>
            ${preBlock('mermaid', toMermaid(flow))}
          </details>`;
        return page(reply, cookie, `Flow ${flow.id}`, body);
      });
    },
    { prefix: '/admin' },
  );
}
