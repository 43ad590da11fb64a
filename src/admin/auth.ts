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
/** The sign-in form's nonce cookie (see {@link AdminAuth.ownSignInForm}). */
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
   * Whether a sign-in post is this dashboard's own form. One the browser says another site
   * started (`Sec-Fetch-Site: cross-site`, or `same-site`: a sibling host, which could also have
   * set a cookie of its own here) is not. Any other post from a browser (it says where it came
   * from: `Origin` or `Sec-Fetch-Site`) must carry the nonce its form was served with, the same in
   * the field and in the cookie: a page on another site can neither read the form nor send the
   * `SameSite=Strict` cookie, whatever the scheme (a browser sends `Sec-Fetch-Site` only to HTTPS
   * and local addresses) and whatever `Host` a proxy passes on. A script posting the token (no
   * `Origin`) needs none: it is no agent's browser to be led there.
   */
  ownSignInForm(req: FastifyRequest, given: string | undefined): boolean {
    const site = req.headers['sec-fetch-site'];
    if (site === 'cross-site' || site === 'same-site') return false;
    const browser = req.headers.origin !== undefined || site !== undefined;
    if (!browser) return true;
    if (given === undefined || given === '') return false;
    return cookieValues(req, LOGIN_COOKIE).some((v) => safeEqual(v, given));
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

/** Whether the request came over TLS (directly or through a proxy that says so). */
export function isSecure(req: FastifyRequest): boolean {
  return req.protocol === 'https';
}
