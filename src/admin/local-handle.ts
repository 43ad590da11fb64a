/**
 * How the CLI on the same machine reaches an embedded Baton that is running: the SQLite file
 * has one owner (`baton.lock`), so `baton session show|reset` and `baton lock clear` cannot open
 * it while `baton start` runs. The running process leaves `baton.admin.json` beside the lock
 * (mode 0600, like the database it guards): its PID, a loopback URL and the admin token. The
 * CLI then asks the admin API instead, and an agent's reset still goes through the process that
 * holds the sessions' leases.
 * @module
 */
import { chmodSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { resolve } from 'node:path';
import { BatonError, ERROR_CODES, type ErrorCode } from '../errors.ts';
import type { SessionView, TransitionRecord } from '../model/session.ts';
import { terminalSafeLine } from '../terminal.ts';

const FILE = 'baton.admin.json';

/** Where a running Baton answers, and the token it accepts. */
export interface LocalHandle {
  readonly pid: number;
  readonly url: string;
  readonly token: string;
}

/** The URL a client on this machine uses for a server bound to `address`. */
export function loopbackUrl(address: AddressInfo): string {
  const host =
    address.address === '0.0.0.0' ? '127.0.0.1' : address.address === '::' ? '::1' : address.address;
  return `http://${host.includes(':') ? `[${host}]` : host}:${address.port}`;
}

/** Leaves the handle in `dir`; returns a function that removes it (if it is still ours). */
export function writeLocalHandle(dir: string, handle: Omit<LocalHandle, 'pid'>): () => void {
  const file = resolve(dir, FILE);
  const mine: LocalHandle = { pid: process.pid, ...handle };
  rmSync(file, { force: true }); // a killed process's: created anew, so the mode below holds
  writeFileSync(file, JSON.stringify(mine) + '\n', { mode: 0o600, flag: 'wx' });
  chmodSync(file, 0o600);
  return () => {
    if (readLocalHandle(dir)?.pid === mine.pid) rmSync(file, { force: true });
  };
}

/** The handle of the process running on `dir`, or null (none, unreadable, or its process is gone). */
export function readLocalHandle(dir: string): LocalHandle | null {
  let parsed: Partial<LocalHandle>;
  try {
    parsed = JSON.parse(readFileSync(resolve(dir, FILE), 'utf8')) as Partial<LocalHandle>;
  } catch {
    return null;
  }
  if (typeof parsed.pid !== 'number' || typeof parsed.url !== 'string' || typeof parsed.token !== 'string')
    return null;
  try {
    process.kill(parsed.pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return null;
  }
  return { pid: parsed.pid, url: parsed.url, token: parsed.token };
}

/** The admin API calls the CLI makes, over HTTP to a running Baton. */
export class LocalAdminClient {
  constructor(private readonly handle: LocalHandle) {}

  private async call<T>(method: string, path: string, body?: unknown): Promise<T> {
    let res: Response;
    try {
      res = await fetch(`${this.handle.url}/admin/api${path}`, {
        method,
        headers: {
          authorization: `Bearer ${this.handle.token}`,
          ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        signal: AbortSignal.timeout(30_000),
      });
    } catch (err) {
      throw new BatonError(
        'BATON_ERR_STORAGE_UNAVAILABLE',
        `the Baton running on this data directory (process ${this.handle.pid}) does not answer at ${this.handle.url}: ${(err as Error).message}`,
        { cause: err },
      );
    }
    const json = (await res.json().catch(() => ({}))) as {
      error?: unknown;
      code?: string;
      channels?: unknown;
    };
    if (res.ok) return json as T;
    const code: ErrorCode =
      typeof json.code === 'string' && json.code in ERROR_CODES
        ? (json.code as ErrorCode)
        : 'BATON_ERR_INTERNAL';
    // A user with sessions on several channels: name them, as the store's own answer does.
    // What the server wrote goes into one line of the CLI's, inert: whoever answers at the URL
    // in the handle file could send escape sequences (outside test QA64-F4).
    const channels = Array.isArray(json.channels)
      ? json.channels.map((c) => terminalSafeLine(String(c)))
      : [];
    const detail = channels.length > 0 ? `: ${channels.join(', ')}; pass --channel` : '';
    const error = typeof json.error === 'string' ? terminalSafeLine(json.error) : undefined;
    throw new BatonError(code, `${error ?? `${method} ${path}: HTTP ${res.status}`}${detail}`);
  }

  private static path(waId: string, channel: string | undefined, tail = ''): string {
    const q = channel === undefined ? '' : `?channel=${encodeURIComponent(channel)}`;
    return `/sessions/${encodeURIComponent(waId)}${tail}${q}`;
  }

  async show(
    waId: string,
    channel?: string,
  ): Promise<{ session: SessionView; transitions: TransitionRecord[] }> {
    const session = await this.call<SessionView>('GET', LocalAdminClient.path(waId, channel));
    // The session found names its channel: its transitions are that session's, whatever the id.
    const { transitions } = await this.call<{ transitions: TransitionRecord[] }>(
      'GET',
      LocalAdminClient.path(waId, session.channel, '/transitions'),
    );
    return { session, transitions };
  }

  reset(waId: string, channel?: string): Promise<SessionView | null> {
    return this.call('POST', LocalAdminClient.path(waId, channel, '/reset'));
  }

  clearLock(waId: string, channel?: string): Promise<{ released: boolean }> {
    return this.call('DELETE', LocalAdminClient.path(waId, channel, '/lock'));
  }
}
