/**
 * Seeds idle sessions into a Baton store, to check that cost does not grow with stored data
 * (issue 10, point 5). Each session is what a finished short conversation leaves: one inbound
 * message consumed, one reply sent, a snapshot at version 1 and its transition record, no
 * lease and nothing pending. It goes through the Backend API, so both backends hold exactly
 * what Baton itself would write (distributed: Redis keys, left to their idle expiry, and the
 * PostgreSQL rows).
 *
 * Usage (the store comes from the usual environment, see docs/configuration.md):
 *
 *   node --import tsx scripts/seed-sessions.ts [count=100000] [--channel <id>] [--concurrency 64]
 *
 * @module
 */
import { pathToFileURL } from 'node:url';
import type { Backend } from '../src/backends/types.ts';
import type { InboundMessage, SessionKey } from '../src/model/message.ts';
import { SNAPSHOT_FORMAT, type OutboundRecord, type SessionSnapshot } from '../src/model/session.ts';

export interface SeedOptions {
  /** Sessions to store. */
  readonly count: number;
  /** Phone number id of the business number they talk to. */
  readonly channel?: string;
  /** wa_id of the first session; the others count up from it. */
  readonly firstUser?: number;
  /** Sessions written at once (default 64). */
  readonly concurrency?: number;
  /** Called every 1,000 sessions with the number done. */
  readonly onProgress?: (done: number) => void;
}

const DEFAULT_CHANNEL = '106540352242922';

/** The session keys {@link seedSessions} writes for `opts`. */
export function seededKeys(opts: SeedOptions): SessionKey[] {
  const channel = opts.channel ?? DEFAULT_CHANNEL;
  const first = opts.firstUser ?? 19_990_000_000;
  return Array.from({ length: opts.count }, (_, i) => ({ channel, user: String(first + i) }));
}

/** Stores one idle session through the Backend API. */
async function seedOne(backend: Backend, key: SessionKey, holder: string): Promise<void> {
  const at = Date.now();
  const message: InboundMessage = {
    channel: key.channel,
    user: key.user,
    id: `wamid.seed.${key.channel}.${key.user}`,
    provider: 'cloud-api',
    waId: key.user,
    timestamp: Math.floor(at / 1000),
    content: { type: 'text', body: 'hi' },
  };
  await backend.ingest({ messages: [message], statuses: [] });
  const lease = await backend.acquireLease(key, holder, 30_000);
  if (lease === null) throw new Error(`session ${key.user} is leased by someone else`);
  try {
    const consumed = (await backend.pending(key, 10)).map((m) => m.id);
    const snapshot: SessionSnapshot = {
      format: SNAPSHOT_FORMAT,
      channel: key.channel,
      user: key.user,
      flow: 'order',
      flowVersion: 1,
      step: 'ask_name',
      data: {},
      version: 1,
      visitVersion: 1,
      lastInteraction: message.timestamp,
      lastMessageId: message.id,
      retryCount: 0,
      needsAgent: false,
      createdAt: at,
      outboundSeq: 1,
      waId: key.user,
    };
    const reply: OutboundRecord = {
      channel: key.channel,
      user: key.user,
      id: `${key.channel}:${key.user}:1:0`,
      seq: 1,
      flow: 'order',
      step: 'ask_name',
      version: 1,
      to: key.user,
      body: { type: 'text', text: 'What is your name?' },
      callbackData: 'baton:order:ask_name:1',
      isPrompt: true,
      status: 'pending',
      attempts: 0,
      createdAt: at,
    };
    await backend.commit(lease, {
      expectedVersion: 0,
      snapshot,
      records: [
        {
          version: 1,
          from_step: null,
          to_step: 'ask_name',
          kind: 'advance',
          message_ids: consumed,
          at: new Date(at).toISOString(),
          worker: holder,
          fencing_token: lease.fence,
        },
      ],
      outbound: [reply],
      consumed,
      deadLetters: [],
    });
    await backend.updateOutbound(reply.id, {
      status: 'sent',
      attempts: 1,
      providerMessageId: `wamid.seed-out.${key.user}`,
    });
  } finally {
    await backend.releaseLease(lease);
  }
}

/**
 * Stores `opts.count` idle sessions (see the module comment); returns their keys. Sessions
 * that already exist are left alone (their commit would conflict): run it on an empty store.
 *
 * @example
 * await seedSessions(backend, { count: 100_000 });
 */
export async function seedSessions(backend: Backend, opts: SeedOptions): Promise<SessionKey[]> {
  const keys = seededKeys(opts);
  let nextIndex = 0;
  let done = 0;
  const holder = `seed-${process.pid}`;
  const lane = async (): Promise<void> => {
    for (let i = nextIndex++; i < keys.length; i = nextIndex++) {
      await seedOne(backend, keys[i]!, holder);
      done += 1;
      if (done % 1000 === 0) opts.onProgress?.(done);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, opts.concurrency ?? 64) }, lane));
  return keys;
}

const USAGE =
  'usage: node --import tsx scripts/seed-sessions.ts [count=100000] [--channel <id>] [--concurrency 64]\n' +
  '  seeds idle sessions into the store the environment names (BATON_DATA_DIR, or REDIS_URL and DATABASE_URL)\n';

async function main(argv: readonly string[]): Promise<void> {
  const known = new Set(['--channel', '--concurrency']);
  const bad = argv.find((a, i) => !/^\d+$/.test(a) && !known.has(a) && !known.has(argv[i - 1] ?? ''));
  if (argv.includes('--help') || argv.includes('-h') || bad !== undefined) {
    process.stderr.write(
      bad !== undefined && bad !== '--help' && bad !== '-h' ? `unknown argument: ${bad}\n${USAGE}` : USAGE,
    );
    process.exitCode = argv.includes('--help') || argv.includes('-h') ? 0 : 2;
    return;
  }
  const { loadConfig } = await import('../src/config/index.ts');
  const { createBackend, createLogger } = await import('../src/app.ts');
  const flag = (name: string): string | undefined => {
    const i = argv.indexOf(name);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  const count = Number(argv.find((a) => /^\d+$/.test(a)) ?? 100_000);
  const config = loadConfig(process.env);
  // The store as Baton opens it (same keys, schema and idle TTL), without its reaper.
  const backend = await createBackend(config, createLogger('warn', 2), {
    distributed: { reaperIntervalMs: 0 },
  });
  await backend.init();
  const started = Date.now();
  try {
    await seedSessions(backend, {
      count,
      ...(flag('--channel') !== undefined ? { channel: flag('--channel')! } : {}),
      ...(flag('--concurrency') !== undefined ? { concurrency: Number(flag('--concurrency')) } : {}),
      onProgress: (n) => process.stderr.write(`\rseeded ${n} / ${count}`),
    });
  } finally {
    await backend.close();
  }
  process.stderr.write(`\nseeded ${count} idle sessions (${backend.kind}) in ${Date.now() - started} ms\n`);
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  main(process.argv.slice(2)).catch((err: unknown) => {
    process.stderr.write(`${err instanceof Error ? err.stack : String(err)}\n`);
    process.exitCode = 1;
  });
}
