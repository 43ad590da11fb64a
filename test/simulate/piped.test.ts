/**
 * `baton simulate` without a terminal: a conversation piped in is played, and the replies already
 * due are shown before it leaves (it left at the end of input, before any came, and printed each
 * line twice, `user 1 > user 1 > hi`: outside test QA80-F1). Stopped by SIGTERM or SIGHUP, it
 * removes its embedded Baton's temporary directory, as at Ctrl-C (QA80-F2: the admin token and
 * the conversations were left in /tmp).
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { expect, it } from 'vitest';
import { BATON_DEV, childEnv } from '../support/procs.ts';

function simulator() {
  const child = spawn(process.execPath, [BATON_DEV, 'simulate', '--start', '--graph-port', '0'], {
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
