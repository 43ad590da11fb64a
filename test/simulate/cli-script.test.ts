/** `baton simulate --start --script`: exit 0 when every expected reply comes, 1 when not, 2 on a bad file. */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { BATON_DEV, childEnv, freePort } from '../support/procs.ts';

const dir = mkdtempSync(join(tmpdir(), 'baton-sim-script-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function baton(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const env = childEnv();
  return new Promise((done) => {
    const p = spawn(process.execPath, [BATON_DEV, ...args], { cwd: dir, env });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    p.on('close', (code) => done({ code, stdout, stderr }));
  });
}

const write = (name: string, body: unknown): string => {
  const file = join(dir, name);
  writeFileSync(file, typeof body === 'string' ? body : JSON.stringify(body));
  return file;
};

describe('baton simulate --script', () => {
  it('exits 0 when every expected reply comes, and writes the transcript', async () => {
    const script = write('ok.json', {
      steps: [
        { send: 'hi', expect: ['what is your name'] },
        {
          send: 'Ann',
          expect: [{ text: 'which product', choices: ['Trail Shoe', 'Rain Jacket', 'Day Pack'] }],
        },
        { send: '2', expect: ['ship'] },
        { send: 'Dock 4', expect: [{ choices: ['Confirm', 'Cancel'] }] },
        { send: '1', expect: ['your order is confirmed'] },
      ],
    });
    const transcript = join(dir, 'ok.txt');
    const r = await baton([
      'simulate',
      '--start',
      '--graph-port',
      '0',
      '--script',
      script,
      '--transcript',
      transcript,
    ]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('script passed: 5 steps, every expected reply came');
    const t = readFileSync(transcript, 'utf8');
    expect(t).toContain('user 1 > (tapped) Rain Jacket');
    expect(t.trimEnd().split('\n').at(-1)).toBe(
      'bot > 1 | Your order is confirmed. Thank you! Send any message to start a new order.',
    );
  }, 30_000);

  it('exits 1 naming the step when an expected reply does not come', async () => {
    const script = write('fail.json', {
      timeoutMs: 1500,
      steps: [
        { send: 'hi', expect: ['what is your name'] },
        { send: 'Ann', expect: ['pizza'] },
      ],
    });
    const r = await baton(['simulate', '--start', '--graph-port', '0', '--script', script]);
    expect(r.code).toBe(1);
    expect(r.stdout).toContain('script FAILED after 1 of 2 steps:');
    expect(r.stdout).toContain(
      '- step 2 ("Ann"): reply 1: expected text containing "pizza"; got: Thanks, Ann. Which product would you like?',
    );
  }, 30_000);

  it('with --start, listens on a free port of its own: 4011 taken, the script still passes (outside test QA70-F7)', async () => {
    // A second simulator (or anything else) on the port the help names for a running Baton.
    const taken = createServer();
    await new Promise<void>((ok) => {
      taken.once('error', () => ok()); // taken already: the same case
      taken.listen(4011, '127.0.0.1', () => ok());
    });
    try {
      const script = write('free.json', { steps: [{ send: 'hi', expect: ['what is your name'] }] });
      const r = await baton(['simulate', '--start', '--script', script]);
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
    } finally {
      await new Promise((done) => taken.close(done));
    }
  }, 30_000);

  it("plays a script written for baton load, its placeholders filled as user 1's (outside test QA70-F9)", async () => {
    const script = join(import.meta.dirname, '../../loadgen/scripts/order-status.json');
    const flows = join(import.meta.dirname, '../../examples/order-status');
    const r = await baton(['simulate', '--start', '--flows', flows, '--script', script]);
    expect(r.stderr).toBe('');
    expect(r.stdout).toContain('script passed');
    expect(r.code).toBe(0);
  }, 60_000);

  it("shows a flow's error in the chat (the embedded Baton logs errors there)", async () => {
    const src = join(import.meta.dirname, '../../src/index.ts');
    const flow = write(
      'boom.mts',
      `import { defineFlow } from ${JSON.stringify(src)};
export default defineFlow({
  id: 'boom',
  start: 'ask',
  steps: {
    ask: { say: 'Say anything.', accepts: 'text', to: [], on: () => { throw new Error('kaboom in my handler'); } },
  },
});
`,
    );
    const script = write('boom.json', {
      timeoutMs: 8000,
      steps: [
        { send: 'hi', expect: ['say anything'] },
        { send: 'x', expect: ['something went wrong'] },
      ],
    });
    const r = await baton(['simulate', '--start', '--flows', flow, '--script', script]);
    expect(r.stdout).toContain('(baton error) flow code failed; batch dead-lettered');
    expect(r.stdout).toContain('kaboom in my handler');
  }, 60_000);

  it('exits 2 on a script that is not a conversation', async () => {
    const r = await baton(['simulate', '--start', '--script', write('bad.json', { steps: [{ say: 'hi' }] })]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^baton: script .*bad\.json: steps\.0/);
  }, 30_000);

  it('exits 2 on a --channel no Cloud API message can be to (outside test X6: every message was lost)', async () => {
    for (const [channel, why] of [
      ['', 'no spaces'],
      ['a b', 'no spaces'],
      ['wasender:x', 'names a WASender channel'],
    ] as const) {
      const r = await baton(['simulate', '--channel', channel, '--url', 'http://127.0.0.1:9']);
      expect(r.code, channel).toBe(2);
      expect(r.stderr).toContain(`baton: --channel`);
      expect(r.stderr).toContain(why);
    }
  }, 30_000);

  it('exits 2 on --flows without --start (a running Baton serves its own flows)', async () => {
    const r = await baton(['simulate', '--flows', 'examples/order-status', '--url', 'http://127.0.0.1:9']);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe(
      'baton: --flows needs --start (a Baton already running serves its own BATON_FLOWS)\n',
    );
    // A module that is not there is blamed on the flag given, not on BATON_FLOWS (outside test QA11-F6).
    const missing = await baton(['simulate', '--start', '--flows', './no-such-flows']);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/^baton: configuration error: --flows: cannot load "\.\/no-such-flows"/);
  }, 30_000);

  it('starts the embedded Baton on --port, and refuses a bad one with exit 2 (outside test A9)', async () => {
    const port = await freePort();
    const script = write('port.json', { steps: [{ send: 'hi', expect: ['what is your name'] }] });
    const r = await baton([
      'simulate',
      '--start',
      '--port',
      String(port),
      '--graph-port',
      '0',
      '--script',
      script,
    ]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`embedded Baton at http://127.0.0.1:${port},`);
    const bad = await baton(['simulate', '--start', '--port', '70000']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toBe('baton: --port must be 0..65535, got "70000"\n');
    const alone = await baton(['simulate', '--port', '4000', '--url', 'http://127.0.0.1:9']);
    expect(alone.code).toBe(2);
    expect(alone.stderr).toBe('baton: --port needs --start (else --url names the Baton)\n');
    // --url beside --start was ignored: the simulator started its own (outside test QA80-F5).
    const both = await baton(['simulate', '--start', '--url', 'http://127.0.0.1:9']);
    expect(both.code).toBe(2);
    expect(both.stderr).toBe('baton: --url names a running Baton and --start starts one: give one of them\n');
  }, 30_000);
});
