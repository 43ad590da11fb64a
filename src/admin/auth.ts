/**
 * Who may call the admin API: a caller with `Authorization: Bearer <ADMIN_TOKEN>`, or the
 * dashboard's signed-in browser (cookie `baton_admin`, `HttpOnly; SameSite=Strict`). A
 * browser's state-changing calls must also carry the page's CSRF token in `X-Baton-CSRF`.
 *
 * Both the cookie and the CSRF token are derived from the admin token with HMAC, so they hold
 * across processes sharing `ADMIN_TOKEN`, carry no secret, and die when the token changes.
 * @module
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import type { FastifyRequest } from 'fastify';

export const COOKIE_NAME = 'baton_admin';
export const CSRF_HEADER = 'x-baton-csrf';
/** A dashboard sign-in lasts this long. */
export const SESSION_TTL_MS = 12 * 60 * 60 * 1000;

function safeEqual(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

function mac(token: string, what: string): string {
  return createHmac('sha256', token).update(what).digest('base64url');
}

export type Caller = { kind: 'bearer' } | { kind: 'cookie'; cookie: string };

export class AdminAuth {
  constructor(
    private readonly token: string,
    private readonly now: () => number = Date.now,
  ) {}

  /** Compares a token typed at sign-in (or sent as Bearer) with the admin token. */
  tokenMatches(given: string): boolean {
    return safeEqual(given, this.token);
  }

  /** A new signed session cookie value: `<expiry ms>.<mac>`. */
  newSession(): string {
    const exp = this.now() + SESSION_TTL_MS;
    return `${exp}.${mac(this.token, `session:${exp}`)}`;
  }

  /** The `Set-Cookie` header for a session value (or for signing out when `value` is empty). */
  cookieHeader(value: string, secure: boolean): string {
    const attrs = ['Path=/admin', 'HttpOnly', 'SameSite=Strict', secure ? 'Secure' : ''].filter(Boolean);
    const life = value === '' ? 'Max-Age=0' : `Max-Age=${Math.floor(SESSION_TTL_MS / 1000)}`;
    return [`${COOKIE_NAME}=${value}`, life, ...attrs].join('; ');
  }

  /** Whether a cookie value is one this token signed and it has not expired. */
  sessionValid(value: string): boolean {
    const m = /^(\d{1,16})\.([A-Za-z0-9_-]{43})$/.exec(value);
    if (!m) return false;
    const exp = Number(m[1]);
    return exp > this.now() && safeEqual(m[2]!, mac(this.token, `session:${exp}`));
  }

  /** The CSRF token bound to one signed-in session. */
  csrfFor(cookie: string): string {
    return mac(this.token, `csrf:${cookie}`);
  }

  /** The signed-in session's cookie value, if the request carries a valid one. */
  sessionOf(req: FastifyRequest): string | null {
    const header = req.headers.cookie;
    if (typeof header !== 'string') return null;
    for (const part of header.split(';')) {
      const [name, ...rest] = part.trim().split('=');
      if (name === COOKIE_NAME) {
        const value = rest.join('=');
        return this.sessionValid(value) ? value : null;
      }
    }
    return null;
  }

  /** Who is calling, or null if nobody we know. */
  caller(req: FastifyRequest): Caller | null {
    // The scheme's name is case-insensitive (RFC 9110 section 11.1); the token is not.
    const bearer = /^bearer +(\S+) *$/i.exec(req.headers.authorization ?? '');
    if (bearer !== null && this.tokenMatches(bearer[1]!)) return { kind: 'bearer' };
    const cookie = this.sessionOf(req);
    return cookie === null ? null : { kind: 'cookie', cookie };
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

/** Whether the request came over TLS (directly or through a proxy that says so). */
export function isSecure(req: FastifyRequest): boolean {
  return req.protocol === 'https';
}
