/**
 * The support dashboard at `/admin` (SPEC section 4): server-rendered pages plus one small
 * script and one stylesheet from `./assets/`, nothing from a CDN. Signing in with the admin
 * token sets the `baton_admin` cookie (`HttpOnly; SameSite=Strict`); the pages' actions call
 * the admin JSON API with the page's CSRF token in `X-Baton-CSRF`. Every value shown is
 * escaped (`./html.ts`); pages carry a strict Content-Security-Policy.
 * @module
 */
import { readFileSync } from 'node:fs';
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { BatonError, StorageUnavailableError } from '../errors.ts';
import type { AdminDeps } from './api.ts';
import { ID_PATTERN } from '../providers/screen.ts';
import { isSecure, type AdminAuth, type SignInRefusal } from './auth.ts';
import { conversationPage } from './conversation.ts';
import { flowPicture } from './flow-picture.ts';
import { flowMermaid } from '../graph/index.ts';
import { html, raw, type Html } from './html.ts';
import { adminErrorHandler, fail } from './http.ts';
import { inboxPage, liveLeaseView, otherSteps, stepCounts } from './reads.ts';
import {
  dashboardPath,
  deadLetterAfter,
  deadLetterCursor,
  InboxQuery,
  MAX_TIME_MS,
  SessionsQuery,
  SignInBody,
} from './schemas.ts';
import { isoSeconds, sessionNamedBy, type SessionSnapshot } from '../model/session.ts';
import {
  actionForm,
  actionsCard,
  conversationCard,
  messageOutcomes,
  duration,
  effectOutcomes,
  failedNotice,
  failedRepliesCard,
  layout,
  letterCell,
  shortCell,
  outboundCard,
  preBlock,
  q,
  sessionHref,
  signInPage,
  stateCard,
  timelineCard,
  unavailablePage,
  type HistoryWindow,
} from './views.ts';

/** Most rows a session page shows per list (the newest); the JSON API pages through all of them. */
const PAGE_ROWS = 300;
/** How far back a session page's window may go (`older`): a bound on what one page reads. */
const MAX_SKIP = 100_000;

/**
 * The newest `n` rows `read` gives that are no newer than `until` (ms; all of the newest `n`
 * without it). Rows newer than `until` are read past once more, so the window keeps its size.
 */
async function newestUpTo<T>(
  read: (n: number) => Promise<T[]>,
  n: number,
  at: (row: T) => number,
  until: number | undefined,
): Promise<T[]> {
  const rows = await read(n);
  if (until === undefined) return rows;
  const later = rows.filter((r) => at(r) > until).length;
  const all = later > 0 && rows.length === n ? await read(n + later) : rows;
  return all.filter((r) => at(r) <= until);
}

/** Dead letters per page of the overview. */
const DEAD_ROWS = 50;

/**
 * Rows per page of the inbox: each row reads its session's last message (a distributed store:
 * one round trip each; 500 rows took 1.2 s), and an agent works the top of the list.
 */
const INBOX_ROWS = 100;

/** Sessions at a step listed on one page of the flow map. */
const STEP_ROWS = 200;

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

/** What keys a session: the user's phone number or their business-scoped user id (BSUID). */
function sessionKey(s: SessionSnapshot): string {
  if (s.user === s.waId) return `phone number ${s.user}`;
  if (s.user === s.userId) return `user id ${s.user}`;
  return s.user;
}

/** What the sign-in page tells an agent whose sign-in was refused before its token was tried. */
const SIGN_IN_REFUSED: Record<SignInRefusal, (req: FastifyRequest) => string> = {
  'other-site': () =>
    'This sign-in did not come from this page (another site posted it): sign in again here.',
  'no-form': () =>
    'This sign-in did not come from this page (another site, or a page a day old): sign in again here.',
  // Named, so an agent behind a proxy that rewrites Host can tell it from an attack.
  'other-origin': (req) =>
    'This sign-in did not come from this page: a page on another origin ' +
    `(${String(req.headers.origin).slice(0, 200)}) posted it, and Baton was reached at ` +
    `${req.host.slice(0, 200) || '(no Host header)'}. Sign in again here; behind a proxy, have it ` +
    'pass the Host header through (or X-Forwarded-Host, with BATON_TRUST_PROXY).',
};

/** Largest form body a dashboard page takes, bytes. */
const FORM_LIMIT = 8192;

/**
 * A store's error as an agent reads it: without the name of the operation that met it
 * ("PostgreSQL is unavailable (signed-out-get)": outside test QA123-F2), which the log keeps.
 */
function agentWords(message: string): string {
  return message.replace(/ \([a-z][a-z0-9 -]*\)$/, '');
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
      // Forms are small: every page's route takes 8 KiB at most (and says so when refused).
      dash.addHook('onRoute', (route) => {
        route.bodyLimit ??= FORM_LIMIT;
      });
      dash.addContentTypeParser(
        'application/x-www-form-urlencoded',
        { parseAs: 'string', bodyLimit: FORM_LIMIT },
        (_req, body, done) => {
          done(
            null,
            Object.fromEntries(new URLSearchParams(typeof body === 'string' ? body : body.toString())),
          );
        },
      );
      // A page that cannot be built (the store is down) is a page that says so, not JSON.
      dash.setErrorHandler((err: FastifyError, req, reply) => {
        const status = err instanceof BatonError ? err.statusCode : (err.statusCode ?? 500);
        if (status < 500) return adminErrorHandler(err, req, reply);
        req.log.error({ err }, 'dashboard page failed');
        const detail =
          err instanceof StorageUnavailableError
            ? `${agentWords(err.message)}. Baton's pages and actions need it; the bot's replies wait for it too.`
            : 'Baton could not build this page; the log says why.';
        return reply.code(status).type('text/html; charset=utf-8').send(unavailablePage(status, detail));
      });
      dash.addHook('onSend', async (_req, reply, payload) => {
        reply.header('content-security-policy', CSP);
        reply.header('x-content-type-options', 'nosniff');
        if (!reply.hasHeader('referrer-policy')) reply.header('referrer-policy', 'no-referrer');
        reply.header('x-frame-options', 'DENY');
        reply.header('cache-control', 'no-store');
        return payload;
      });

      const throttle = auth.throttle;
      /** The signed-in cookie, or null after answering (sign-in page or redirect). */
      const signedIn = (req: FastifyRequest): Promise<string | null> => auth.signedIn(req);
      const page = (reply: FastifyReply, cookie: string, title: string, body: Html, status = 200) =>
        reply
          .code(status)
          .type('text/html; charset=utf-8')
          .send(layout({ title, csrf: auth.csrfFor(cookie), flows, body }));
      // To the sign-in, which comes back here once signed in.
      const toSignIn = (reply: FastifyReply) => {
        const here = dashboardPath(reply.request.url);
        const to = here === undefined || here === '/admin' ? '/admin' : `/admin?next=${q(here)}`;
        return reply.code(303).header('location', to).send();
      };

      // A mistyped dashboard address is a page that says so for a signed-in agent, as an unknown
      // session's or flow's is (it was the API's JSON: outside test QA77-F3). The API's, other
      // methods' and anybody else's stay the JSON every unknown route answers.
      dash.setNotFoundHandler(async (req, reply) => {
        const path = req.url.split('?', 1)[0]!;
        const cookie =
          (req.method !== 'GET' && req.method !== 'HEAD') || path.startsWith('/admin/api/')
            ? null
            : await signedIn(req);
        if (cookie === null)
          return fail(reply, 'BATON_ERR_NOT_FOUND', {}, `No route ${req.method} ${path.slice(0, 200)}`);
        return page(
          reply,
          cookie,
          'Not found',
          html`<p class="error" id="not-found">There is no page <code>${path}</code>.</p>
            <p><a href="/admin">Back to the overview</a></p>`,
          404,
        );
      });

      dash.get('/assets/dashboard.js', async (_req, reply) =>
        reply.type('text/javascript; charset=utf-8').send(SCRIPT),
      );
      dash.get('/assets/dashboard.css', async (_req, reply) =>
        reply.type('text/css; charset=utf-8').send(STYLE),
      );

      /** The sign-in page with a fresh form nonce (its cookie set with it). */
      const signInReply = (req: FastifyRequest, reply: FastifyReply, status: number, error?: string) => {
        const { nonce, header } = auth.loginNonce(isSecure(req));
        return (
          reply
            .code(status)
            .header('set-cookie', header)
            // Under `no-referrer` a browser posts the form with `Origin: null`, which is what a page
            // elsewhere can send too: the sign-in must name its own origin (outside test QA64-F1).
            // Still no referrer to any other origin.
            .header('referrer-policy', 'same-origin')
            .type('text/html; charset=utf-8')
            .send(
              signInPage(
                nonce,
                error,
                dashboardPath((req.body as { next?: unknown } | undefined)?.next) ??
                  dashboardPath((req.query as { next?: unknown } | undefined)?.next),
              ),
            )
        );
      };

      dash.post('/login', async (req, reply) => {
        const body = SignInBody.safeParse(req.body);
        // A sign-in another site posted is refused before it counts: else any page an agent opens
        // could post ten wrong tokens and lock that agent's address (everyone's, behind a proxy)
        // out of the dashboard and the API, or sign the agent in to a session of its own (outside
        // tests QA50-F1, QA51-F2).
        const refusal = auth.signInRefusal(req, body.success ? body.data.nonce : undefined);
        if (refusal !== null) return signInReply(req, reply, 403, SIGN_IN_REFUSED[refusal](req));
        const wait = throttle.waitMs(req.ip);
        if (wait > 0) {
          reply.header('retry-after', String(Math.ceil(wait / 1000)));
          return signInReply(
            req,
            reply,
            429,
            'Too many wrong tokens from here: wait a minute and try again.',
          );
        }
        if (!body.success || !auth.tokenMatches(body.data.token)) {
          throttle.failed(req.ip, body.success ? body.data.token : '');
          return signInReply(req, reply, 401, 'That token is not right.');
        }
        return reply
          .code(303)
          .header('set-cookie', auth.cookieHeader(auth.newSession(), isSecure(req)))
          .header('location', dashboardPath(body.data.next) ?? '/admin')
          .send();
      });

      dash.post('/logout', async (req, reply) => {
        const caller = await auth.callerOf(req);
        if (caller !== null && !auth.csrfOk(req, caller)) {
          return reply.code(403).send({ error: 'Missing or invalid CSRF token', code: 'BATON_ERR_CSRF' });
        }
        // No sign-in came with the request: nothing to sign out, and no cookie is cleared (a form
        // on another site posts here without the cookie, SameSite=Strict, and must not sign the
        // agent out).
        if (caller === null) return reply.code(200).send({ signed_out: true });
        // Signed out everywhere: a copy of this cookie no longer lets anyone in either.
        if (caller.kind === 'cookie') await auth.signOut(caller.cookie);
        return reply
          .code(200)
          .header('set-cookie', auth.cookieHeader('', isSecure(req)))
          .send({ signed_out: true });
      });

      dash.get('/', async (req, reply) => {
        const cookie = await signedIn(req);
        if (cookie === null) return signInReply(req, reply, 200);
        // Dead letters a page at a time (`dead_after`: the last one of the page before).
        const deadCursor = (req.query as Record<string, unknown>).dead_after;
        const deadAfter = typeof deadCursor === 'string' ? deadLetterAfter(deadCursor) : undefined;
        const [stats, deadPage, inbox, failed] = await Promise.all([
          // Fresh: an agent who just replayed or cleared something must see it counted.
          backend.stats(),
          backend.listDeadLetters(DEAD_ROWS + 1, deadAfter),
          inboxPage(backend, now(), 5),
          backend.failedReplies(20),
        ]);
        const dead = deadPage.slice(0, DEAD_ROWS);
        const lastDead = dead.at(-1);
        const olderDead =
          deadPage.length > DEAD_ROWS && lastDead
            ? `/admin?dead_after=${q(deadLetterCursor(lastDead))}#dead-letters`
            : null;
        const here = deadAfter ? `/admin?dead_after=${q(String(deadCursor))}#dead-letters` : '/admin';
        const stat = (id: string, label: string, value: string | number) =>
          html`<div class="stat" id="stat-${id}">
            <div class="value">${value}</div>
            <div class="label">${label}</div>
          </div>`;
        const body = html`<section class="stats" id="stats">
            ${stat('queue-depth', 'queue depth', stats.queueDepth)}
            ${stat('oldest-pending', 'oldest pending', duration(stats.oldestPendingMs))}
            ${stat('throughput', 'messages / s (last minute)', stats.messagesPerSecond)}
            ${stat('workers', 'live workers', stats.workers)} ${stat('locks', 'leases held', stats.locksHeld)}
            ${stat('dead-letters', 'dead letters', stats.deadLetters)}
            ${stat('unsent', 'sends waiting', stats.unsent)}
            ${stat('oldest-unsent', 'oldest unsent', duration(stats.oldestUnsentMs))}
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
            ${
              deadAfter || olderDead
                ? html`<p class="muted pager" id="dead-letters-pager">
                    ${deadAfter ? html`Older ones, ${dead.length} from where the page before ended.` : html`The newest ${dead.length} of ${stats.deadLetters}.`}
                    ${deadAfter ? html`<a class="newer" href="/admin#dead-letters">Newest</a>` : ''}
                    ${olderDead ? html`<a class="older" href="${olderDead}">Older</a>` : ''}
                  </p>`
                : ''
            }
            ${
              dead.length === 0
                ? html`<p class="muted">None.</p>`
                : html` <div class="table-wrap">
                    <table class="grid">
                      <thead>
                        <tr>
                          <th>Created</th>
                          <th>Kind</th>
                          <th>Session</th>
                          <th>Ref</th>
                          <th>Reason</th>
                          <th>Content</th>
                          <th></th>
                        </tr>
                      </thead>
                      <tbody>
                        ${dead.map(
                          (d) =>
                            html`<tr data-id="${d.id}">
                              <td><time>${new Date(d.createdAt).toISOString()}</time></td>
                              <td>${d.kind}</td>
                              <td>
                                ${d.kind === 'unreadable' ? html`<em>no session</em>` : html`<a href="${sessionHref(d)}">${d.user}</a>`}
                              </td>
                              <td><code>${d.ref}</code></td>
                              <td>${d.reason}</td>
                              ${letterCell(d)}
                              <td>
                                ${d.kind === 'unreadable' ? html`kept as it came` : d.replayedAt !== undefined ? html`replayed <time>${new Date(d.replayedAt).toISOString()}</time>` : actionForm({ method: 'POST', url: `/admin/api/dead-letters/${q(d.id)}/replay`, label: 'Replay', next: here, cls: 'replay' })}
                              </td>
                            </tr>`,
                        )}
                      </tbody>
                    </table>
                  </div>`
            }
          </section>
          ${failedRepliesCard(failed)}`;
        return page(reply, cookie, 'Overview', body);
      });

      dash.get('/session', async (req, reply) => {
        const cookie = await signedIn(req);
        if (cookie === null) return toSignIn(reply);
        const query = req.query as Record<string, unknown>;
        const typed = typeof query.wa_id === 'string' ? query.wa_id.trim() : '';
        // A phone number as people write it (`+1 555-010 2030`, or `0049 151...` with the
        // international prefix dialled from Europe: outside test QA102-F2) is a wa_id's digits.
        const waId = /^\+?[\d\s().-]{4,40}$/.test(typed)
          ? typed.replace(/\D/g, '').replace(/^00(?=[1-9])/, '')
          : typed;
        const channel = typeof query.channel === 'string' && query.channel !== '' ? query.channel : undefined;
        // Given twice (`?wa_id=a&wa_id=b`), a parameter is a list: said so, not quoted as "" (Q7).
        const twice = ['wa_id', 'channel'].find((k) => Array.isArray(query[k]));
        if (
          twice !== undefined ||
          !ID_PATTERN.test(waId) ||
          (channel !== undefined && !ID_PATTERN.test(channel))
        ) {
          return page(
            reply,
            cookie,
            'Find a session',
            html`<p class="error" id="not-found">
              ${
                twice !== undefined
                  ? `${twice} is given more than once: name one session.`
                  : channel !== undefined && !ID_PATTERN.test(channel)
                    ? `"${channel}" is not a business number or gateway session id.`
                    : `"${waId}" is not a WhatsApp number or user id.`
              }
            </p>`,
            400,
          );
        }
        const found = await backend.findSessions(waId, channel);
        if (found.length === 0) {
          // A user who just wrote has no session until their first message is processed: with a
          // backlog, say so, so that an agent does not take "no session" for "never wrote".
          const queued = await backend.stats().catch(() => null);
          return page(
            reply,
            cookie,
            'Find a session',
            html`<p class="error" id="not-found">
                No session for
                <code>${waId}</code>${channel ? html` on channel <code>${channel}</code>` : ''}.
              </p>
              ${
                queued !== null && queued.queueDepth > 0
                  ? html`<p class="muted" id="queued">
                      ${queued.queueDepth} ${queued.queueDepth === 1 ? 'message waits' : 'messages wait'} to
                      be processed, the oldest for ${Math.round(queued.oldestPendingMs / 1000)} s: a user who
                      wrote for the first time has a session once their first message is processed.
                    </p>`
                  : ''
              }`,
            404,
          );
        }
        // A link of the chooser names the channel: there the session keyed by the id itself is
        // the one meant (a user id also finds the session keyed by that user's phone number).
        const named = channel !== undefined && found.length > 1 ? sessionNamedBy(found, waId) : undefined;
        if (found.length > 1 && named === undefined) {
          const oneChannel = new Set(found.map((x) => x.channel)).size === 1;
          return page(
            reply,
            cookie,
            'Several sessions',
            html`<p id="several">
                ${oneChannel ? html`This user has several sessions on business number <code>${found[0]!.channel}</code> (one for each id they wrote with).` : 'This user writes to several business numbers.'}
                Choose one:
              </p>
              <ul id="channels">
                ${found.map(
                  (x) =>
                    html`<li>
                      <a href="${sessionHref(x)}">${sessionKey(x)}</a>
                      <span class="muted"
                        >channel <code>${x.channel}</code>,
                        ${x.step === null ? 'no step' : html`at <code>${x.step}</code>`}, version
                        ${x.version}, last activity
                        <time
                          >${x.lastInteraction !== null ? isoSeconds(x.lastInteraction) : new Date(x.createdAt).toISOString()}</time
                        ></span
                      >
                    </li>`,
                )}
              </ul>`,
          );
        }
        const s = named ?? found[0]!;
        // A long history is shown a window at a time (`older`: how many of the newest rows to
        // skip), and only what the window needs is read: the newest rows of each list, one more
        // than shown to know whether older ones exist. Paging back counts from the moment it
        // began (`until`, ms): rows newer than that are left out, so what the user writes
        // meanwhile neither shifts the window nor makes "Newer" skip rows (outside test QA34-F1).
        const skip = Math.min(MAX_SKIP, Math.max(0, Math.floor(Number(query.older) || 0)));
        // A time a Date holds (1e20 threw RangeError: "This page failed", outside test QA42-F3).
        const untilMs = Number(query.until);
        const until = skip > 0 && untilMs > 0 && untilMs <= MAX_TIME_MS ? Math.floor(untilMs) : undefined;
        const asOf = until ?? now();
        const take = skip + PAGE_ROWS + 1;
        const [lease, records, outbound, inbound] = await Promise.all([
          liveLeaseView(backend, s, now()),
          newestUpTo(
            (n) => backend.transitions(s, n),
            take,
            (r) => Date.parse(r.at),
            until,
          ),
          newestUpTo(
            (n) => backend.outbound(s, n),
            take,
            (o) => o.createdAt,
            until,
          ),
          newestUpTo(
            (n) => backend.inbound(s, n),
            take,
            (m) => m.storedAt,
            until,
          ),
        ]);
        const conv = conversationPage(inbound, outbound, 2 * take);
        const windowed = <T>(all: readonly T[]): [T[], HistoryWindow] => {
          const end = Math.max(0, all.length - skip);
          return [
            all.slice(Math.max(0, end - PAGE_ROWS), end),
            {
              skip,
              rows: PAGE_ROWS,
              older: end > PAGE_ROWS,
              ...(until !== undefined ? { asOf: new Date(until).toISOString() } : {}),
              href: (n) => `${sessionHref(s)}${n > 0 ? `&older=${n}&until=${asOf}` : ''}`,
            },
          ];
        };
        // The name the user shows in WhatsApp, as their newest message carried it: who the agent
        // is talking to (outside test QA102-F2: it was stored, and no page showed it).
        let profileName: string | undefined;
        let profileAt = -Infinity;
        for (const m of inbound)
          if (m.profileName !== undefined && m.storedAt >= profileAt) {
            profileName = m.profileName;
            profileAt = m.storedAt;
          }
        const body = html`<p class="sub">
            User <code id="session-user">${s.waId ?? s.user}</code>${
              profileName === undefined
                ? ''
                : html` (<bdi id="profile-name">${profileName}</bdi> in WhatsApp)`
            }
            on channel <code>${s.channel}</code>
          </p>
          ${failedNotice(outbound)}
          <div class="columns">
            <div>${stateCard(s, lease)}${actionsCard(s, flows.get(s.flow))}</div>
            <div>${conversationCard(...windowed(conv.messages), messageOutcomes(records))}</div>
          </div>
          ${timelineCard(...windowed(records))}
          ${outboundCard(...windowed(outbound), effectOutcomes(inbound, records))}`;
        return page(reply, cookie, `Session ${s.waId ?? s.user}`, body);
      });

      dash.get('/inbox', async (req, reply) => {
        const cookie = await signedIn(req);
        if (cookie === null) return toSignIn(reply);
        const query = req.query as Record<string, unknown>;
        const given = InboxQuery.shape.cursor.safeParse(query.cursor);
        const cursor = given.success ? given.data : undefined;
        const agentGiven = InboxQuery.shape.agent.safeParse(query.agent);
        const agent = agentGiven.success ? agentGiven.data : undefined;
        const unassigned = agent === undefined && query.unassigned === 'true';
        const inbox = await inboxPage(backend, now(), INBOX_ROWS, undefined, cursor, { agent, unassigned });
        const { from } = inbox;
        // The filter rides on every link of the page.
        const filterQuery = agent !== undefined ? `agent=${q(agent)}` : unassigned ? 'unassigned=true' : '';
        const inboxHref = (more: string): string => {
          const parts = [filterQuery, more].filter((p) => p !== '');
          return parts.length === 0 ? '/admin/inbox' : `/admin/inbox?${parts.join('&')}`;
        };
        const filterLink = (label: string, href: string, on: boolean, id: string) =>
          on
            ? html`<strong id="${id}" aria-current="page">${label}</strong>`
            : html`<a id="${id}" href="${href}">${label}</a>`;
        const waitingAll = inbox.unassigned + inbox.agents.reduce((n, a) => n + a.sessions, 0);
        const filters = html`<p class="filters" id="inbox-filters">
          Show:
          ${filterLink(`everyone (${waitingAll})`, '/admin/inbox', agent === undefined && !unassigned, 'inbox-all')}
          ·
          ${filterLink(`nobody yet (${inbox.unassigned})`, '/admin/inbox?unassigned=true', unassigned, 'inbox-unassigned')}
          ${inbox.agents.map(
            (a, i) =>
              html`·
              ${filterLink(`${a.agent} (${a.sessions})`, `/admin/inbox?agent=${q(a.agent)}`, agent === a.agent, `inbox-agent-${i}`)} `,
          )}
        </p>`;
        const shown = inbox.sessions.length;
        // Said when the page does not show every waiting session: which ones it shows, and a
        // link to the next ones (the rows used to stop at 500 without a word).
        const range =
          shown < inbox.total
            ? html`<p id="inbox-range">
                Sessions ${shown === 0 ? 0 : from + 1} to ${from + shown} of ${inbox.total} waiting.
                ${from > 0 ? html`<a href="${inboxHref('')}" id="inbox-first">Longest waiting</a>` : ''}
                ${inbox.next_cursor !== null ? html`<a href="${inboxHref(`cursor=${q(inbox.next_cursor)}`)}" id="inbox-next">Next ${INBOX_ROWS}</a>` : ''}
                ${inbox.ordered < inbox.total ? html`<span class="muted">The list orders the first ${inbox.ordered} the store gave; find the others by number.</span>` : ''}
              </p>`
            : '';
        // What an agent works the inbox by (how long each has waited, who has them) comes first: on
        // a phone only the first columns fit (outside test QA83-F3).
        const body = html`<p class="sub">
            Sessions waiting for an agent, longest waiting first. While one waits, the bot is silent and the
            user's messages are recorded.
          </p>
          ${filters} ${range}
          <div class="table-wrap">
            <table class="grid" id="inbox">
              <thead>
                <tr>
                  <th>User</th>
                  <th>Waiting</th>
                  <th>Agent</th>
                  <th>Step</th>
                  <th>Why</th>
                  <th>Last message</th>
                  <th>Flow</th>
                  <th>Channel</th>
                  <th>Since</th>
                </tr>
              </thead>
              <tbody>
                ${inbox.sessions.map(
                  (s) =>
                    html`<tr data-wa-id="${s.wa_id}">
                      <td><a href="${sessionHref({ user: s.wa_id, channel: s.channel })}">${s.wa_id}</a></td>
                      <td class="waiting">${duration(s.waiting_ms)}</td>
                      <td class="agent">${s.agent ?? html`<span class="muted">nobody yet</span>`}</td>
                      <td>${s.current_step ?? '-'}</td>
                      <td class="why">
                        ${s.metadata.handoff_reason ?? html`<span class="muted">invalid answers</span>`}
                      </td>
                      ${shortCell('last', s.last_message ? (s.last_message.text ?? `(${s.last_message.type})`) : '-')}
                      <td>${s.flow}</td>
                      <td>${s.channel}</td>
                      <td><time>${s.waiting_since}</time></td>
                    </tr>`,
                )}
              </tbody>
            </table>
          </div>
          ${inbox.sessions.length === 0 ? html`<p class="muted" id="inbox-empty">${filterQuery === '' ? 'Nobody is waiting.' : 'Nobody waiting matches this filter.'}</p>` : ''}`;
        return page(reply, cookie, 'Inbox', body);
      });

      dash.get('/flows/:id', async (req, reply) => {
        const cookie = await signedIn(req);
        if (cookie === null) return toSignIn(reply);
        const flow = flows.get((req.params as { id: string }).id);
        if (!flow) return page(reply, cookie, 'No such flow', html`<p class="error">No such flow.</p>`, 404);
        const query = req.query as Record<string, unknown>;
        const t = now();
        const counts = await stepCounts(backend, flow, t, deps.sessionTtlSec);
        // Sessions at steps this version of the flow lacks (another version wrote them: a rolling
        // deploy, a rollback) are counted and listed too (outside test QA113-F1).
        const others = otherSteps(flow, counts);
        const step =
          typeof query.step === 'string' && (flow.steps.has(query.step) || others.includes(query.step))
            ? query.step
            : undefined;
        const href = (id: string): string => `/admin/flows/${q(flow.id)}?step=${q(id)}#sessions`;
        const picture = flowPicture(flow, counts, href);
        // A page of the step's sessions at a time, as the inbox: 5,000 in one page made 883 KB of
        // HTML and 2 s in the browser (outside test Q5). A cursor that is not one starts over.
        const given = SessionsQuery.shape.cursor.safeParse(query.cursor);
        const cursor = given.success ? given.data : undefined;
        const listed = step
          ? await backend.listSessions({
              step,
              limit: STEP_ROWS,
              ...(cursor !== undefined ? { cursor } : {}),
            })
          : { sessions: [], nextCursor: null };
        const here = listed.sessions.filter((s) => s.flow === flow.id);
        const body = html`<p class="sub">
            Live counts per step: sessions at each step now, and how long the longest has waited there since
            the user last wrote. Click a step to list its sessions.
            ${deps.sessionTtlSec !== undefined ? html`Sessions idle longer than the session TTL (${duration(deps.sessionTtlSec * 1000)}) are counted apart: their next message starts them over. Not those waiting for an agent, which stay where they are.` : ''}
          </p>
          ${picture}
          <div class="table-wrap">
            <table class="grid" id="step-counts">
              <thead>
                <tr>
                  <th>Step</th>
                  <th>Sessions</th>
                  <th>Longest waiting</th>
                </tr>
              </thead>
              <tbody>
                ${[...flow.steps.keys(), ...others].map(
                  (id) =>
                    html`<tr data-step="${id}" ${flow.steps.has(id) ? '' : raw('class="other-step"')}>
                      <td>
                        <a href="${href(id)}">${id}</a>
                        ${
                          flow.steps.has(id)
                            ? ''
                            : html`<span class="muted"
                                >(not a step of ${flow.id} v${flow.version}, which this process runs: another
                                version wrote these sessions)</span
                              >`
                        }
                      </td>
                      <td class="n">${counts[id]?.sessions ?? 0}</td>
                      <td>${counts[id]?.oldestMs !== undefined ? duration(counts[id].oldestMs) : '-'}</td>
                    </tr>`,
                )}
              </tbody>
            </table>
          </div>
          ${
            step
              ? html`<section class="card" id="sessions">
                  <h2>Sessions at <code>${step}</code></h2>
                  <ul id="step-sessions">
                    ${here.map((s) => {
                      const idleMs = Math.max(0, t - (s.lastInteraction ?? s.createdAt / 1000) * 1000);
                      const expired =
                        deps.sessionTtlSec !== undefined &&
                        !s.needsAgent &&
                        idleMs > deps.sessionTtlSec * 1000;
                      return html`<li>
                        <a href="${sessionHref(s)}">${s.waId ?? s.user}</a>
                        <span class="muted"
                          >channel ${s.channel}, version ${s.version}, waiting
                          ${duration(idleMs)}${expired ? ', idle past the session TTL' : ''}</span
                        >
                      </li>`;
                    })}
                  </ul>
                  ${here.length === 0 ? html`<p class="muted">None.</p>` : ''}
                  <p class="muted" id="step-sessions-more">
                    ${`${counts[step]?.sessions ?? 0} at this step${counts[step]?.idle ? `, and ${counts[step].idle} idle past the session TTL` : ''}; ${STEP_ROWS} a page.`}
                    ${cursor !== undefined ? html`<a href="${href(step)}" id="step-sessions-first">First page</a>` : ''}
                    ${
                      listed.nextCursor !== null
                        ? html`<a
                            href="/admin/flows/${q(flow.id)}?step=${q(step)}&cursor=${q(listed.nextCursor)}#sessions"
                            id="step-sessions-next"
                            >Next ${STEP_ROWS}</a
                          >`
                        : ''
                    }
                  </p>
                </section>`
              : ''
          }
          <details>
            <summary>Mermaid</summary>
            ${preBlock('mermaid', flowMermaid(flow))}
          </details>`;
        return page(reply, cookie, `Flow ${flow.id}`, body);
      });
    },
    { prefix: '/admin' },
  );
}
