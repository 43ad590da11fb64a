/**
 * A real embedded Baton (SQLite in a temp dir, HTTP on a free port) replying to the load
 * generator's reply sink: what the load generator's tests run against.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { createBaton } from '../../src/app.ts';
import { loadConfig } from '../../src/config/index.ts';
import { startReplySink, type ReplySink } from '../../loadgen/index.ts';

export interface LoadTarget {
  readonly url: string;
  readonly sink: ReplySink;
  readonly secret: string;
  readonly adminToken: string;
  close(): Promise<void>;
}

/** Starts the target; `name` names its secrets and temp dir, `env` adds to its configuration. */
export async function startLoadTarget(
  name: string,
  env: Record<string, string>,
  opts: { concurrency?: number } = {},
): Promise<LoadTarget> {
  const sink = await startReplySink();
  const dir = mkdtempSync(join(tmpdir(), `baton-${name}-`));
  const secret = `${name}-secret`;
  const adminToken = `${name}-admin`;
  const baton = await createBaton(
    loadConfig({
      PORT: '0',
      HOST: '127.0.0.1',
      BATON_DATA_DIR: dir,
      WHATSAPP_APP_SECRET: secret,
      WHATSAPP_API_BASE_URL: sink.url,
      ADMIN_TOKEN: adminToken,
      ...env,
    }),
    { logger: pino({ level: 'silent' }), ...opts },
  );
  const url = (await baton.start())!;
  return {
    url,
    sink,
    secret,
    adminToken,
    async close() {
      await baton.stop();
      await sink.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
