/**
 * Starts a real Baton (HTTP server on a free port, SQLite file in a temp dir) against a real
 * fake Graph API, and offers the calls the end-to-end tests make.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { createBaton, type Baton, type BatonOptions } from '../../src/app.ts';
import { loadConfig } from '../../src/config/index.ts';
import type { SessionView, TransitionRecord } from '../../src/model/session.ts';
import { signMetaBody } from '../../src/providers/index.ts';
import { startFakeGraph, type FakeGraph } from './fake-graph.ts';
import { PHONE_ID } from './payloads.ts';

export const APP_SECRET = 'test-app-secret';
export const VERIFY_TOKEN = 'test-verify-token';
export const ADMIN_TOKEN = 'test-admin-token';

export interface Harness {
  url: string;
  baton: Baton;
  graph: FakeGraph;
  dir: string;
  /** POSTs a JSON body signed with the app secret (or `signature` as given). */
  post(
    body: unknown,
    opts?: { signature?: string | null; raw?: string | Buffer; path?: string },
  ): Promise<Response>;
  admin(path: string, init?: RequestInit): Promise<Response>;
  /** Signs in to the dashboard with the admin token; resolves with the session cookie (`name=value`). */
  dashboardCookie(): Promise<string>;
  session(waId: string): Promise<SessionView | null>;
  transitions(waId: string): Promise<TransitionRecord[]>;
  /** Polls `check` until it returns a value other than undefined/false, or throws after `timeoutMs`. */
  until<T>(
    check: () => Promise<T | undefined | false> | T | undefined | false,
    timeoutMs?: number,
  ): Promise<T>;
  /** Waits until the session is at `version` with nothing pending and no baton held. */
  settled(waId: string, version: number): Promise<SessionView>;
  /**
   * Stops Baton (graceful) and starts a new one on the same stores, with `env` added, and with
   * `opts` in place of the harness's options if given (another flow version, say).
   */
  restart(env?: Record<string, string>, opts?: BatonOptions): Promise<void>;
  close(): Promise<void>;
}

export async function startHarness(
  env: Record<string, string> = {},
  opts: BatonOptions = {},
): Promise<Harness> {
  const graph = await startFakeGraph();
  const dir = mkdtempSync(join(tmpdir(), 'baton-test-'));
  const makeEnv = (extra: Record<string, string>): Record<string, string> => ({
    PORT: '0',
    HOST: '127.0.0.1',
    BATON_DATA_DIR: dir,
    WHATSAPP_APP_SECRET: APP_SECRET,
    WHATSAPP_VERIFY_TOKEN: VERIFY_TOKEN,
    WHATSAPP_ACCESS_TOKEN: 'test-access-token',
    WHATSAPP_API_BASE_URL: graph.url,
    WASENDER_API_BASE_URL: graph.url,
    ADMIN_TOKEN,
    BATON_BUFFER_MS: '40',
    // Test payloads carry fixed timestamps (T0 = 2025-06-15): a ten-year dedupe window keeps
    // them inside it, so they are not recorded `late` for being older than the window.
    BATON_DEDUPE_TTL: '3650d',
    ...env,
    ...extra,
  });
  const boot = async (
    extra: Record<string, string>,
    options: BatonOptions = opts,
  ): Promise<{ baton: Baton; url: string }> => {
    const baton = await createBaton(loadConfig(makeEnv(extra)), {
      logger: pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' }),
      engine: { sendBackoffMs: 10 },
      ...options,
    });
    const url = (await baton.start())!;
    return { baton, url };
  };
  let current = await boot({});

  const h: Harness = {
    get url() {
      return current.url;
    },
    get baton() {
      return current.baton;
    },
    graph,
    dir,
    async post(body, o = {}) {
      const raw = o.raw ?? Buffer.from(JSON.stringify(body));
      const headers: Record<string, string> = { 'content-type': 'application/json' };
      const sig = o.signature === undefined ? signMetaBody(Buffer.from(raw), APP_SECRET) : o.signature;
      if (sig !== null) headers['x-hub-signature-256'] = sig;
      return fetch(`${current.url}${o.path ?? '/webhooks/whatsapp'}`, {
        method: 'POST',
        headers,
        body: new Uint8Array(Buffer.from(raw)),
      });
    },
    admin(path, init = {}) {
      return fetch(`${current.url}/admin/api${path}`, {
        ...init,
        headers: { authorization: `Bearer ${ADMIN_TOKEN}`, ...(init.headers ?? {}) },
      });
    },
    async dashboardCookie() {
      const login = await fetch(`${current.url}/admin/login`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ token: ADMIN_TOKEN }).toString(),
        redirect: 'manual',
      });
      return login.headers.get('set-cookie')!.split(';')[0]!;
    },
    async session(waId) {
      const r = await h.admin(`/sessions/${waId}?channel=${PHONE_ID}`);
      return r.status === 200 ? ((await r.json()) as SessionView) : null;
    },
    async transitions(waId) {
      const r = await h.admin(`/sessions/${waId}/transitions?channel=${PHONE_ID}`);
      return r.status === 200 ? ((await r.json()) as { transitions: TransitionRecord[] }).transitions : [];
    },
    async until(check, timeoutMs = 10_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const v = await check();
        if (v !== undefined && v !== false) return v;
        if (Date.now() > deadline) throw new Error('condition not met in time');
        await new Promise((r) => setTimeout(r, 15));
      }
    },
    async settled(waId, version) {
      return h.until(async () => {
        const s = await h.session(waId);
        if (!s || s.metadata.version < version) return undefined;
        const st = await current.baton.backend.stats();
        // No baton held either: the holder is done (replies recorded), not just its state visible.
        return st.queueDepth === 0 && st.locksHeld === 0 ? s : undefined;
      });
    },
    async restart(extra = {}, options) {
      await current.baton.stop();
      current = await boot(extra, options);
    },
    async close() {
      await current.baton.stop().catch(() => undefined);
      await graph.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return h;
}
