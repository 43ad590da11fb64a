/**
 * `baton simulate --url` against a Baton whose replies go to another Graph API (started without
 * WHATSAPP_API_BASE_URL pointing at the simulator): the chat said nothing at all, for as long as
 * one waited (outside tester's E8). Now, 5 s after a message Baton accepted with no reply, it says
 * once what is most likely wrong, naming the URL to give that Baton.
 */
import { spawn } from 'node:child_process';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { APP_SECRET, startHarness, type Harness } from '../support/harness.ts';
import { BATON_DEV, childEnv } from '../support/procs.ts';

let h: Harness;
beforeAll(async () => {
  h = await startHarness();
});
afterAll(async () => {
  await h?.close();
});

it('says why there may be no reply, once, naming WHATSAPP_API_BASE_URL', async () => {
  const child = spawn(process.execPath, [BATON_DEV, 'simulate', '--url', h.url, '--graph-port', '0'], {
    env: childEnv({ WHATSAPP_APP_SECRET: APP_SECRET }),
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout.on('data', (b: Buffer) => (out += b.toString()));
  child.stderr.on('data', (b: Buffer) => (out += b.toString()));
  const until = async (what: RegExp, ms: number): Promise<void> => {
    const deadline = Date.now() + ms;
    while (!what.test(out)) {
      if (Date.now() > deadline) throw new Error(`never saw ${String(what)}:\n${out}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  };
  try {
    await until(/Type a message/, 20_000);
    const graphUrl = /WHATSAPP_API_BASE_URL=(\S+)/.exec(out)![1]!;
    child.stdin.write('hi\n');
    // The Baton answered, to its own Graph API, not to the simulator's.
    await h.graph.waitFor((c) => JSON.stringify(c.body).includes('name'), 10_000);
    await until(/no reply yet/, 10_000);
    expect(out).toContain(`Start it with WHATSAPP_API_BASE_URL=${graphUrl}`);
    child.stdin.write('hello again\n');
    await new Promise((r) => setTimeout(r, 6_000));
    expect(out.match(/no reply yet/g)).toHaveLength(1);
    child.stdin.write('/quit\n');
    const code = await new Promise<number | null>((r) => child.once('exit', r));
    expect(code).toBe(0);
  } finally {
    child.kill('SIGKILL');
  }
}, 60_000);
