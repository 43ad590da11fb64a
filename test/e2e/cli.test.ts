import { spawnSync } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import { run } from '../../src/cli/index.ts';
import { startHarness } from '../support/harness.ts';
import { PHONE_ID, text, webhook } from '../support/payloads.ts';

describe('baton session / lock on an embedded store', () => {
  it('shows, clears the lock of, and resets a session; exits 1 for an unknown one', async () => {
    const h = await startHarness();
    const u = '15550003333';
    try {
      expect((await h.post(webhook([text(u, 'hi', 1_750_000_000)]))).status).toBe(200);
      expect((await h.post(webhook([text(u, 'hi', 1_750_000_000)], '999'))).status).toBe(200);
      await h.settled(u, 1);
      await h.until(async () => (await h.baton.backend.findSessions(u)).length === 2);
      await h.baton.stop();

      process.env.BATON_DATA_DIR = h.dir;
      process.env.LOG_LEVEL = 'silent';
      const out: string[] = [];
      const say = (s: string): void => {
        out.push(s);
      };
      const stderr = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
      try {
        expect(await run(['session', 'show', u], say)).toBe(2); // two channels: --channel is needed
        // Named by its wa_id already: only --channel is asked for (outside test QA89-F5).
        expect(String(stderr.mock.calls.at(-1)?.[0])).toMatch(/pass --channel\n?$/);
      } finally {
        stderr.mockRestore();
      }
      expect(await run(['session', 'show', u, '--channel', PHONE_ID], say)).toBe(0);
      const shown = JSON.parse(out.at(-1)!) as { session: { current_step: string }; transitions: unknown[] };
      expect(shown.session.current_step).toBe('ask_name');
      expect(shown.transitions).toHaveLength(1);
      expect(await run(['lock', 'clear', u, '--channel', PHONE_ID], say)).toBe(0);
      expect(JSON.parse(out.at(-1)!)).toEqual({ released: false });
      expect(await run(['session', 'reset', u, '--channel', PHONE_ID], say)).toBe(0);
      expect(JSON.parse(out.at(-1)!)).toMatchObject({
        current_step: null,
        data: {},
        metadata: { version: 2 },
      });
      expect(await run(['session', 'show', '000'], say)).toBe(1);

      // A data directory with no store: one error, and nothing created there.
      const missing = join(h.dir, 'typo');
      process.env.BATON_DATA_DIR = missing;
      expect(await run(['session', 'show', u], say)).toBe(1);
      expect(await run(['lock', 'clear', u], say)).toBe(1);
      expect(existsSync(missing)).toBe(false);
    } finally {
      delete process.env.BATON_DATA_DIR;
      await h.close();
    }
  });

  it('while Baton runs on the data directory, goes through its admin API', async () => {
    const h = await startHarness();
    const u = '15550003334';
    const handle = join(h.dir, 'baton.admin.json');
    try {
      expect((await h.post(webhook([text(u, 'hi', 1_750_000_000)]))).status).toBe(200);
      await h.settled(u, 1);
      // The token lies beside the database, readable by its owner only.
      expect(statSync(handle).mode & 0o777).toBe(0o600);

      process.env.BATON_DATA_DIR = h.dir;
      process.env.LOG_LEVEL = 'silent';
      const out: string[] = [];
      const say = (s: string): void => {
        out.push(s);
      };
      expect(await run(['session', 'show', u], say)).toBe(0);
      const shown = JSON.parse(out.at(-1)!) as { session: { current_step: string }; transitions: unknown[] };
      expect(shown.session.current_step).toBe('ask_name');
      expect(shown.transitions).toHaveLength(1);
      expect(await run(['lock', 'clear', u], say)).toBe(0);
      expect(JSON.parse(out.at(-1)!)).toEqual({ released: false });
      expect(await run(['session', 'reset', u], say)).toBe(0);
      expect(JSON.parse(out.at(-1)!)).toMatchObject({ current_step: null, metadata: { version: 2 } });
      // The reset went through the running process: it holds the session at version 2.
      expect((await h.session(u))?.metadata.version).toBe(2);
      expect(await run(['session', 'show', '000'], say)).toBe(1);
      // A user on two numbers: a usage error naming both, through the running process too.
      expect((await h.post(webhook([text(u, 'hi', 1_750_000_001)], '999'))).status).toBe(200);
      await h.until(async () => (await h.baton.backend.findSessions(u)).length === 2);
      const stderr = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
      try {
        expect(await run(['session', 'show', u], say)).toBe(2);
        expect(String(stderr.mock.calls.at(-1)?.[0])).toMatch(/999.*--channel|--channel.*999/);
        expect(String(stderr.mock.calls.at(-1)?.[0])).toContain(PHONE_ID);
      } finally {
        stderr.mockRestore();
      }

      await h.baton.stop();
      expect(existsSync(handle)).toBe(false);
    } finally {
      delete process.env.BATON_DATA_DIR;
      await h.close();
    }
  });
});

// `node dist/cli/main.js worker`, as a supervisor may be told to run it, printed nothing and
// exited 0 (outside test QA89-F4): the module runs the CLI when it is the process's script.
describe('the CLI module run as a script', () => {
  it('runs the command once, with its exit code', () => {
    const main = join(import.meta.dirname, '../../src/cli/main.ts');
    const ok = spawnSync(process.execPath, ['--import', 'tsx', main, '--version'], { encoding: 'utf8' });
    expect(ok.status).toBe(0);
    expect(ok.stdout.trim().split('\n')).toHaveLength(1);
    expect(ok.stdout).toMatch(/^\d+\.\d+\.\d+/);
    const usage = spawnSync(process.execPath, ['--import', 'tsx', main, 'no-such-command'], {
      encoding: 'utf8',
    });
    expect(usage.status).toBe(2);
  }, 30_000);
});
