/**
 * A status webhook that arrives before its send is recorded is parked for
 * EARLY_STATUS_TTL_MS (10 minutes), on both backends, with a clock the test moves: within it the
 * status applies when the send is recorded; past it, it does not (a status that old is about
 * some other send, or nothing Baton will record).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { EmbeddedBackend } from '../../src/backends/embedded/index.ts';
import type { Backend } from '../../src/backends/types.ts';
import { EARLY_STATUS_TTL_MS, type SessionKey } from '../../src/model/message.ts';
import { batch, newKey, outbound, record, status, uid } from '../distributed/fixtures.ts';
import { makeBackend, useCleanup } from '../distributed/harness.ts';
import { servicesUp } from '../support/services.ts';

useCleanup();
const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

const makers: Array<[string, boolean, (now: () => number) => Promise<Backend>]> = [
  [
    'embedded',
    true,
    async (now) => {
      const dir = mkdtempSync(join(tmpdir(), 'baton-park-'));
      dirs.push(dir);
      const b = new EmbeddedBackend({ dataDir: dir, bufferMs: 50, dedupeTtlSec: 3600, now });
      await b.init();
      return b;
    },
  ],
  ['distributed', servicesUp, async (now) => (await makeBackend({ now })).backend],
];

describe.each(makers)('parked statuses expire (%s)', (_name, up, make) => {
  async function committed(b: Backend, key: SessionKey) {
    const g = (await b.acquireLease(key, 'w1', 5000))!;
    const o1 = outbound(key, 1, 0, 1, true);
    const o2 = outbound(key, 1, 1, 2, false);
    await b.commit(g, batch(key, 0, 1, { outbound: [o1, o2], records: [record(g, 1, 'advance', [])] }));
    await b.releaseLease(g);
    return [o1, o2] as const;
  }

  it.skipIf(!up)('applies a status parked within 10 minutes, not one parked longer ago', async () => {
    let t = Date.now();
    const b = await make(() => t);
    try {
      const key = newKey();
      const [o1, o2] = await committed(b, key);
      const [old, fresh] = [`wamid.${uid()}`, `wamid.${uid()}`];
      await b.ingest({ messages: [], statuses: [status(key, old, 'delivered')] });
      t += EARLY_STATUS_TTL_MS - 60_000;
      await b.ingest({ messages: [], statuses: [status(key, fresh, 'read')] });
      t += 2 * 60_000; // `old` is now 11 minutes parked, `fresh` 2
      await b.updateOutbound(o1.id, { status: 'sent', attempts: 1, providerMessageId: old });
      await b.updateOutbound(o2.id, { status: 'sent', attempts: 1, providerMessageId: fresh });
      expect((await b.outbound(key)).map((o) => o.status)).toEqual(['sent', 'read']);
    } finally {
      await b.close();
    }
  });
});
