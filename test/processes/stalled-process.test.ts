/**
 * A burst is not split by a `baton start` process (embedded) that the machine stopped
 * scheduling mid-burst for longer than twice the window (outside test QA137-F1: SIGSTOP for
 * 1.3 s at a 500 ms window split 3 bursts of 3; the window stretches by the loop's delay at most
 * doubled, and the rest of each burst was read after that).
 *
 * Each user's first message of a burst is stored; the process is stopped while the rest of the
 * burst reaches its socket, for 1.3 s. When it runs again its timers come first: the first
 * messages' batches are due, and the connections made meanwhile are accepted and read one per
 * event-loop turn after. The engine waits for turns in which no webhook begins (its loop was
 * late); each webhook counts from when it may have come, its arrival less how late the loop ran
 * (the intake gate holds the batch for it), and keeps how late it was read with its messages, so
 * the batch takes the burst whole.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectStalledBurstsWhole } from '../support/bursts.ts';
import { startFakeGraph, type FakeGraph } from '../support/fake-graph.ts';
import { ADMIN_TOKEN, APP_SECRET } from '../support/harness.ts';
import { PHONE_ID } from '../support/payloads.ts';
import { freePort, spawnBaton, type BatonProcess } from '../support/procs.ts';

const WINDOW_MS = 500;
const STALL_MS = 1_300;

describe('a baton start process stopped mid-burst, longer than twice the window', () => {
  let graph: FakeGraph;
  let proc: BatonProcess;
  let base: string;
  let dir: string;

  beforeAll(async () => {
    graph = await startFakeGraph();
    dir = mkdtempSync(join(tmpdir(), 'baton-stall-'));
    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    proc = await spawnBaton(['start'], {
      HOST: '127.0.0.1',
      PORT: String(port),
      BATON_DATA_DIR: dir,
      WHATSAPP_APP_SECRET: APP_SECRET,
      WHATSAPP_API_BASE_URL: graph.url,
      ADMIN_TOKEN,
      BATON_BUFFER_MS: String(WINDOW_MS),
    });
  }, 60_000);

  afterAll(async () => {
    proc?.child.kill('SIGCONT');
    await proc?.stop('SIGKILL');
    await graph?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('8 users: the rest of each burst, read 1.3 s late, joins its first message', async () => {
    await expectStalledBurstsWhole(
      { webhookBase: base, adminBase: base, graph },
      proc.child,
      '1666920',
      STALL_MS,
    );
    // The conversation tells a support team which messages were read that late.
    const r = await fetch(`${base}/admin/api/sessions/16669200000/messages?channel=${PHONE_ID}`, {
      headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
    });
    const { messages } = (await r.json()) as { messages: { text?: string; read_late_ms?: number }[] };
    const late = messages.filter((m) => (m.read_late_ms ?? 0) >= STALL_MS - 300);
    expect(late.length, JSON.stringify(messages)).toBeGreaterThanOrEqual(3);
    expect(messages.find((m) => m.text === 'hi')?.read_late_ms ?? 0).toBeLessThan(STALL_MS - 300);
  }, 90_000);
});
