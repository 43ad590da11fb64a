/**
 * A real embedded Baton on a free port (SQLite in a temporary folder, removed by `stop`): signed
 * webhooks with `secret`, replies to `graphUrl` (the simulator's fake Graph API, the load
 * generator's reply sink).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { createBaton, type Baton, type BatonOptions } from '../../src/app.ts';
import { loadConfig } from '../../src/config/index.ts';

export async function startEmbeddedTarget(
  secret: string,
  graphUrl: string,
  env: Record<string, string> = {},
  opts: BatonOptions = {},
): Promise<{ baton: Baton; url: string; stop: () => Promise<void> }> {
  const dir = mkdtempSync(join(tmpdir(), 'baton-sim-'));
  const baton = await createBaton(
    loadConfig({
      PORT: '0',
      HOST: '127.0.0.1',
      BATON_DATA_DIR: dir,
      WHATSAPP_APP_SECRET: secret,
      WHATSAPP_API_BASE_URL: graphUrl,
      ...env,
    }),
    { logger: pino({ level: 'silent' }), ...opts },
  );
  const url = (await baton.start())!;
  return {
    baton,
    url,
    stop: async () => {
      await baton.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
