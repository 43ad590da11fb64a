/**
 * Who may call the admin API: a caller with `Authorization: Bearer <ADMIN_TOKEN>`, or the
 * dashboard's signed-in browser (cookie `baton_admin`, `HttpOnly; SameSite=Strict`). A
 * browser's state-changing calls must also carry the page's CSRF token in `X-Baton-CSRF`.
 *
 * Both the cookie and the CSRF token are derived from the admin token with HMAC, so they hold
 * across processes sharing `ADMIN_TOKEN`, carry no secret, and die when the token changes. Each
 * sign-in has its own id in the cookie; signing out records that id in the store (every process
 * sharing it sees it), so a copy of the cookie stops working too.
 * @module
 */
import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { FastifyRequest } from 'fastify';
import { addressKey } from '../ingress/connection-guard.ts';

export const COOKIE_NAME = 'baton_admin';
/** The sign-in form's nonce cookie (see {@link AdminAuth.signInRefusal}). */
export const LOGIN_COOKIE = 'baton_login';
export const CSRF_HEADER = 'x-baton-csrf';
/** A dashboard sign-in lasts this long. */
export const SESSION_TTL_MS = 12 * 60 * 60 * 1000;

/** Compares in time independent of where they differ, and of their lengths (digests compared). */
export function safeEqual(a: string, b: string): boolean {
  const digest = (s: string): Buffer => createHash('sha256').update(s).digest();
  return timingSafeEqual(digest(a), digest(b));
}

/** Wrong sign-in tokens one address may try per window before it must wait. */
export const SIGN_IN_ATTEMPTS = 10;
const SIGN_IN_WINDOW_MS = 60_000;
/** Addresses tracked at most (memory). */
const MAX_TRACKED = 10_000;

/**
 * Slows down guessing the admin token, at the sign-in form and as a Bearer token of the admin
 * API alike: after {@link SIGN_IN_ATTEMPTS} different wrong tokens from one address within a
 * minute, that address waits out the minute (both answer 429, the right token included: else
 * guesses would go on being checked). The same wrong token again is no new guess (a client left
 * with an old token locks nobody out). Per process, in memory; the token's length does the rest.
 */
export class SignInThrottle {
  private readonly failures = new Map<string, { tried: Set<string>; until: number }>();

  constructor(private readonly now: () => number = Date.now) {}

  /** Milliseconds `address` must still wait, or 0. */
  waitMs(address: string): number {
    const f = this.failures.get(addressKey(address));
    if (f === undefined || f.until <= this.now()) return 0;
    return f.tried.size >= SIGN_IN_ATTEMPTS ? f.until - this.now() : 0;
  }

  /** `address` tried the wrong `token`. */
  failed(address: string, token: string): void {
    const now = this.now();
    const key = addressKey(address); // an IPv6 client by its /64, as the connection guard counts
    const guess = createHash('sha256').update(token).digest('base64url');
    const f = this.failures.get(key);
    if (f === undefined || f.until <= now) {
      if (this.failures.size >= MAX_TRACKED) this.makeRoom(now);
      this.failures.set(key, { tried: new Set([guess]), until: now + SIGN_IN_WINDOW_MS });
    } else if (f.tried.size < SIGN_IN_ATTEMPTS) f.tried.add(guess);
  }

  /**
   * A flood of addresses: forgets those whose minute is over, then those not locked out. An
   * address locked out stays so (a flood from other addresses must not lift it).
   */
  private makeRoom(now: number): void {
    for (const [k, f] of this.failures) if (f.until <= now) this.failures.delete(k);
    if (this.failures.size < MAX_TRACKED) return;
    for (const [k, f] of this.failures) if (f.tried.size < SIGN_IN_ATTEMPTS) this.failures.delete(k);
  }
}

function mac(token: string, what: string): string {
  return createHmac('sha256', token).update(what).digest('base64url');
}

/** Why a sign-in post was refused before its token was looked at (see {@link AdminAuth.signInRefusal}). */
export type SignInRefusal = 'other-site' | 'other-origin' | 'no-form';

export type Caller = { kind: 'bearer' } | { kind: 'cookie'; cookie: string };

/** Where sign-outs are kept (the backend: shared by every process, kept across restarts). */
export interface SignOuts {
  revokeSignIn(id: string, untilMs: number): Promise<void>;
  signInRevoked(id: string): Promise<boolean>;
}

const COOKIE_RE = /^(\d{1,16})\.([A-Za-z0-9_-]{22})\.([A-Za-z0-9_-]{43})$/;

export class AdminAuth {
  /** Wrong tokens per address, for the form and the API (one count: the same secret). */
  readonly throttle: SignInThrottle;

  constructor(
    private readonly token: string,
    private readonly signOuts: SignOuts,
    private readonly now: () => number = Date.now,
  ) {
    this.throttle = new SignInThrottle(now);
  }

  /** Compares a token typed at sign-in (or sent as Bearer) with the admin token. */
  tokenMatches(given: string): boolean {
    return safeEqual(given, this.token);
  }

  /** A new signed session cookie value: `<expiry ms>.<sign-in id>.<mac>`. */
  newSession(): string {
    const exp = this.now() + SESSION_TTL_MS;
    const id = randomBytes(16).toString('base64url');
    return `${exp}.${id}.${mac(this.token, `session:${exp}:${id}`)}`;
  }

  /** The `Set-Cookie` header for a session value (or for signing out when `value` is empty). */
  cookieHeader(value: string, secure: boolean): string {
    return adminCookie(COOKIE_NAME, value, value === '' ? 0 : Math.floor(SESSION_TTL_MS / 1000), secure);
  }

  /**
   * A nonce for one sign-in form, with the `Set-Cookie` header that goes with the page: the form
   * carries it in a hidden field, the browser keeps it in a `SameSite=Strict` cookie.
   */
  loginNonce(secure: boolean): { nonce: string; header: string } {
    const nonce = randomBytes(18).toString('base64url');
    return { nonce, header: adminCookie(LOGIN_COOKIE, nonce, 86_400, secure) };
  }

  /**
   * Why a sign-in post is not this dashboard's own form, or null if it is. One the browser says
   * another site started (`Sec-Fetch-Site: cross-site`, or `same-site`: a sibling host, which
   * could also have set a cookie of its own here) is `other-site`. Without `Sec-Fetch-Site` (a
   * browser sends it only to HTTPS and local addresses), a post whose `Origin` is not the address
   * it was sent to is `other-origin` (see {@link sameOrigin}). Any other post from a browser (it
   * says where it came from: `Origin` or `Sec-Fetch-Site`) must carry the nonce its form was
   * served with, the same in the field and in the cookie, else `no-form`: a page on another site
   * can neither read the form nor send the `SameSite=Strict` cookie. A script posting the token
   * (no `Origin`) needs none: it is no agent's browser to be led there.
   */
  signInRefusal(req: FastifyRequest, given: string | undefined): SignInRefusal | null {
    const site = req.headers['sec-fetch-site'];
    if (site === 'cross-site' || site === 'same-site') return 'other-site';
    const origin = req.headers.origin;
    if (origin === undefined && site === undefined) return null;
    // The nonce alone is no proof over plain HTTP: a page on the parent domain, or on the same
    // IP at another port, can set a `baton_login` cookie of its own choosing here (cookies
    // ignore ports and may be set for a parent domain) and post the same value in the field, so
    // its wrong tokens would count and lock the agent out (outside test QA64-F1).
    if (site === undefined && !sameOrigin(req, origin!)) return 'other-origin';
    if (given === undefined || given === '') return 'no-form';
    return cookieValues(req, LOGIN_COOKIE).some((v) => safeEqual(v, given)) ? null : 'no-form';
  }

  /** Whether a cookie value is one this token signed and it has not expired (sign-outs aside). */
  sessionValid(value: string): boolean {
    const m = COOKIE_RE.exec(value);
    if (!m) return false;
    const exp = Number(m[1]);
    return exp > this.now() && safeEqual(m[3]!, mac(this.token, `session:${exp}:${m[2]!}`));
  }

  /** Signs a valid cookie's sign-in out, everywhere, for the rest of its life. */
  async signOut(cookie: string): Promise<void> {
    const m = COOKIE_RE.exec(cookie);
    if (m && this.sessionValid(cookie)) await this.signOuts.revokeSignIn(m[2]!, Number(m[1]));
  }

  /** Whether a valid cookie's sign-in was signed out. */
  private signedOut(cookie: string): Promise<boolean> {
    return this.signOuts.signInRevoked(COOKIE_RE.exec(cookie)![2]!);
  }

  /**
   * The request's signed-in cookie value: the first valid one not signed out. A browser sends
   * every cookie of that name whose domain and path match (a stale, junk or signed-out one that
   * another page or a sibling host set may come first), so each is looked at in turn.
   */
  async signedIn(req: FastifyRequest): Promise<string | null> {
    for (const cookie of this.sessionsOf(req)) if (!(await this.signedOut(cookie))) return cookie;
    return null;
  }

  /** Who is calling (a signed-out cookie is nobody), or null if nobody we know. */
  async callerOf(req: FastifyRequest): Promise<Caller | null> {
    // The scheme's name is case-insensitive (RFC 9110 section 11.1); the token is not.
    const bearer = /^bearer +(\S+) *$/i.exec(req.headers.authorization ?? '');
    if (bearer !== null && this.tokenMatches(bearer[1]!)) return { kind: 'bearer' };
    const cookie = await this.signedIn(req);
    return cookie === null ? null : { kind: 'cookie', cookie };
  }

  /** The CSRF token bound to one signed-in session. */
  csrfFor(cookie: string): string {
    return mac(this.token, `csrf:${cookie}`);
  }

  /** The valid session cookie values the request carries, in its order (sign-outs aside). */
  private sessionsOf(req: FastifyRequest): string[] {
    return cookieValues(req, COOKIE_NAME).filter((v) => this.sessionValid(v));
  }

  /**
   * For a cookie caller's state-changing request: whether it carries the session's CSRF token.
   * Bearer callers need none (a browser never adds that header by itself).
   */
  csrfOk(req: FastifyRequest, caller: Caller): boolean {
    if (caller.kind === 'bearer') return true;
    if (req.method === 'GET' || req.method === 'HEAD') return true;
    const given = req.headers[CSRF_HEADER];
    return typeof given === 'string' && safeEqual(given, this.csrfFor(caller.cookie));
  }
}

/** A `Set-Cookie` header for one of the dashboard's cookies (`maxAgeSec` 0: clears it). */
function adminCookie(name: string, value: string, maxAgeSec: number, secure: boolean): string {
  const attrs = ['Path=/admin', 'HttpOnly', 'SameSite=Strict', secure ? 'Secure' : ''].filter(Boolean);
  return [`${name}=${value}`, `Max-Age=${maxAgeSec}`, ...attrs].join('; ');
}

/** The values of every cookie named `name` the request carries, in its order. */
function cookieValues(req: FastifyRequest, name: string): string[] {
  const header = req.headers.cookie;
  if (typeof header !== 'string') return [];
  const values: string[] = [];
  for (const part of header.split(';')) {
    const [key, ...rest] = part.trim().split('=');
    if (key === name) values.push(rest.join('='));
  }
  return values;
}

/**
 * Whether a browser's `Origin` is the address the request was sent to: its host and port those
 * of `Host` (or, from a proxy BATON_TRUST_PROXY trusts, `X-Forwarded-Host`), its scheme the
 * request's where that is known (TLS here, or a trusted proxy's `X-Forwarded-Proto`, or plain
 * HTTP with no proxy in sight). `Origin: null` (a sandboxed frame, a redirect from elsewhere) is
 * no address and never the same.
 */
function sameOrigin(req: FastifyRequest, origin: string): boolean {
  let from: URL;
  try {
    from = new URL(origin);
  } catch {
    return false; // `null`, or nothing a browser sends
  }
  const scheme = knownScheme(req) ?? from.protocol.slice(0, -1);
  let to: URL;
  try {
    to = new URL(`${scheme}://${req.host}`);
  } catch {
    return false;
  }
  // A Host with more in it than a host and port names no address a browser could have used.
  return from.origin === to.origin && to.pathname === '/' && to.username === '' && to.search === '';
}

/** The scheme the browser used to reach this request, when it can be told; else undefined. */
function knownScheme(req: FastifyRequest): string | undefined {
  const h = req.headers;
  const forwarded = h['x-forwarded-proto'];
  if (typeof forwarded === 'string') {
    // Fastify believes the header's last entry only from a trusted proxy: the same answer, trusted.
    const last = forwarded.split(',').at(-1)!.trim().toLowerCase();
    return req.protocol === last ? last : undefined;
  }
  if (req.protocol === 'https') return 'https';
  // Plain HTTP with no proxy in sight is what the browser used; a proxy that does not say what
  // it was reached with (it may terminate TLS) leaves the scheme unknown.
  const proxied = ['forwarded', 'x-forwarded-for', 'x-forwarded-host', 'via'].some((n) => h[n] !== undefined);
  return proxied ? undefined : 'http';
}

/** Whether the request came over TLS (directly or through a proxy that says so). */
export function isSecure(req: FastifyRequest): boolean {
  return req.protocol === 'https';
}
