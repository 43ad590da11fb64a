/**
 * A real embedded Baton (SQLite in a temp dir, HTTP on a free port) replying to the load
 * generator's reply sink: what the load generator's tests run against.
 */
import { startReplySink, type ReplySink } from '../../loadgen/index.ts';
import { startEmbeddedTarget } from './embedded-target.ts';

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
  const secret = `${name}-secret`;
  const adminToken = `${name}-admin`;
  const target = await startEmbeddedTarget(secret, sink.url, { ADMIN_TOKEN: adminToken, ...env }, opts);
  const { url } = target;
  return {
    url,
    sink,
    secret,
    adminToken,
    async close() {
      await target.stop();
      await sink.close();
    },
  };
}
