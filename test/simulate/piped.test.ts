/**
 * `baton simulate` without a terminal: a conversation piped in is played, and the replies already
 * due are shown before it leaves (it left at the end of input, before any came, and printed each
 * line twice, `user 1 > user 1 > hi`: outside test QA80-F1). Stopped by SIGTERM or SIGHUP, it
 * removes its embedded Baton's temporary directory, as at Ctrl-C (QA80-F2: the admin token and
 * the conversations were left in /tmp).
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { BATON_DEV, childEnv } from '../support/procs.ts';

function simulator(extra: readonly string[] = []) {
  const child = spawn(process.execPath, [BATON_DEV, 'simulate', '--start', '--graph-port', '0', ...extra], {
    env: childEnv({ NO_COLOR: '1' }),
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout.on('data', (b: Buffer) => (out += b.toString()));
  child.stderr.on('data', (b: Buffer) => (out += b.toString()));
  const exited = new Promise<number | null>((r) => child.once('exit', r));
  const until = async (what: RegExp, ms = 30_000): Promise<RegExpExecArray> => {
    const deadline = Date.now() + ms;
    for (;;) {
      const m = what.exec(out);
      if (m) return m;
      if (Date.now() > deadline) throw new Error(`never saw ${String(what)}:\n${out}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  };
  return { child, exited, until, output: () => out };
}

it('plays a piped conversation to the end of its replies, each line printed once', async () => {
  const sim = simulator();
  try {
    await sim.until(/Type a message/);
    sim.child.stdin.end('hi\nJane\n');
    expect(await sim.exited).toBe(0);
    const out = sim.output();
    expect(out).not.toMatch(/user 1 > user 1 >/);
    expect(out.match(/^user 1 > hi$/gm)).toHaveLength(1);
    expect(out.match(/^user 1 > Jane$/gm)).toHaveLength(1);
    // The product list the name led to came before it left (the two lines, posted at once, were
    // one batch: the name prompt it already answered is not sent, SPEC 1.6).
    expect(out).toMatch(/^bot > .*Thanks, Jane/m);
    expect(out).toContain('Trail Shoe');
  } finally {
    sim.child.kill('SIGKILL');
  }
}, 60_000);

it('stays for the reply an effect in flight brings, after the input ended (outside test QA86-F4)', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'baton-piped-'));
  const src = join(import.meta.dirname, '../../src/index.ts');
  const flow = join(dir, 'slow.mts');
  // The lookup answers 4 s after the last line: well past the buffer window and the second the
  // chat waited for a quiet line before it left.
  writeFileSync(
    flow,
    `import { defineFlow, effect } from ${JSON.stringify(src)};
const lookup = effect({ run: async (_q: string) => { await new Promise((r) => setTimeout(r, 4000)); return { ok: true }; } });
export default defineFlow({
  id: 'slow_lookup',
  start: 'ask',
  effects: { lookup },
  steps: {
    ask: { say: 'Say anything.', accepts: 'text', to: ['look'], on: (_i, c) => c.goto('look') },
    look: {
      say: 'Looking it up.',
      to: ['found'],
      effect: { use: 'lookup', input: () => 'q', onResult: (_r, c) => c.goto('found'), onFailure: (_f, c) => c.goto('found') },
    },
    found: { say: 'Here is your answer.', accepts: 'text', to: ['found'], on: (_i, c) => c.goto('found') },
  },
});
`,
  );
  const sim = simulator(['--flows', flow]);
  try {
    await sim.until(/Type a message/);
    sim.child.stdin.end('hi\nthere\n');
    expect(await sim.exited).toBe(0);
    const out = sim.output();
    expect(out).toMatch(/^bot > .*Looking it up/m);
    expect(out).toContain('Baton is still at work for this chat');
    expect(out).toMatch(/^bot > .*Here is your answer/m);
  } finally {
    sim.child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
}, 60_000);

it.each(['SIGTERM', 'SIGHUP'] as const)(
  'stopped by %s, removes its data directory',
  async (signal) => {
    const sim = simulator();
    try {
      const [, dir] = await sim.until(/data: (\S+) \(removed on exit/);
      expect(existsSync(dir!)).toBe(true);
      sim.child.kill(signal);
      await sim.exited;
      expect(existsSync(dir!)).toBe(false);
    } finally {
      sim.child.kill('SIGKILL');
    }
  },
  60_000,
);
