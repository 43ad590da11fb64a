/**
 * Start-up configuration checks that stop `baton start` with one line naming the variable
 * (SPEC 2): the WASender route on (`WASENDER_WEBHOOK_SECRET`) needs the key its replies are sent
 * with.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeEach, expect, it, vi, type MockInstance } from 'vitest';
import { run } from '../../src/cli/index.ts';
import { loadConfig } from '../../src/config/index.ts';
import { freePort, spawnBaton } from '../support/procs.ts';

let stderr: MockInstance<typeof process.stderr.write>;
const dir = mkdtempSync(join(tmpdir(), 'baton-start-config-'));

beforeEach(() => {
  stderr = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
});

afterEach(() => {
  vi.restoreAllMocks();
  vi.unstubAllEnvs();
});

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

it('the WASender route without WASENDER_API_KEY is refused, naming the key', () => {
  expect(() => loadConfig({ WASENDER_WEBHOOK_SECRET: 's2' })).toThrow(
    /^WASENDER_API_KEY: must be set when WASENDER_WEBHOOK_SECRET is/,
  );
  expect(loadConfig({ WASENDER_WEBHOOK_SECRET: 's2', WASENDER_API_KEY: 'k' }).wasender.apiKey).toBe('k');
  // The route off: no key needed.
  expect(loadConfig({}).wasender.apiKey).toBeUndefined();
});

it('baton start stops with one line and exit 1', async () => {
  vi.stubEnv('WASENDER_WEBHOOK_SECRET', 's2');
  vi.stubEnv('WASENDER_API_KEY', '');
  vi.stubEnv('PORT', '0');
  vi.stubEnv('HOST', '127.0.0.1');
  vi.stubEnv('BATON_DATA_DIR', dir);
  expect(await run(['start'], () => undefined)).toBe(1);
  const written = stderr.mock.calls.map((c) => String(c[0])).join('');
  expect(written).toMatch(
    /^baton: configuration error: WASENDER_API_KEY: must be set when WASENDER_WEBHOOK_SECRET is[^\n]*\n$/,
  );
});

it('warns at start when BATON_DEDUPE_TTL is under the 7 days SPEC 1.2 asks for (outside test L5)', async () => {
  const started = async (ttl: string): Promise<string> => {
    const data = mkdtempSync(join(dir, 'ttl-'));
    const p = await spawnBaton(['start'], {
      PORT: String(await freePort()),
      HOST: '127.0.0.1',
      BATON_DATA_DIR: data,
      BATON_DEDUPE_TTL: ttl,
    });
    await p.stop();
    expect(p.output()).toMatch(/^Flows: order v1 \(new sessions start here\)$/m);
    // Warnings go to stderr (outside test QA58-F7), what it serves to stdout.
    return p.stderr();
  };
  expect(await started('10s')).toMatch(
    /^WARNING: BATON_DEDUPE_TTL is 10 s, under the 7 days Meta may redeliver/m,
  );
  const plain = await started('7d');
  expect(plain).not.toContain('BATON_DEDUPE_TTL');
  // What it serves, and that replies to the real Graph API need a token (outside test QA4-L4).
  expect(plain).not.toMatch(/^Flows: order/m);
  expect(plain).toMatch(/^WARNING: WHATSAPP_ACCESS_TOKEN is not set: the Graph API will refuse every reply/m);
}, 60_000);

it('on WASender alone (the Cloud API route off), no word of a Cloud API access token (outside test QA110-F1)', async () => {
  const data = mkdtempSync(join(dir, 'wasender-'));
  const p = await spawnBaton(['start'], {
    PORT: String(await freePort()),
    HOST: '127.0.0.1',
    BATON_DATA_DIR: data,
    NODE_ENV: 'production',
    ADMIN_TOKEN: 'a-long-enough-admin-token',
    WASENDER_WEBHOOK_SECRET: 's2',
    WASENDER_API_KEY: 'k',
  });
  await p.stop();
  const said = p.stderr();
  expect(said).toContain('POST /webhooks/whatsapp is off (404)');
  expect(said).not.toContain('WHATSAPP_ACCESS_TOKEN');
}, 60_000);

it('warns at start, on stderr, of a short ADMIN_TOKEN other machines can try (outside test QA64-F5)', async () => {
  const started = async (env: Record<string, string>): Promise<string> => {
    const p = await spawnBaton(['start'], {
      PORT: String(await freePort()),
      BATON_DATA_DIR: mkdtempSync(join(dir, 'token-')),
      ...env,
    });
    await p.stop();
    return p.stderr();
  };
  // README's quick start as it was (HOST unset: 0.0.0.0).
  expect(await started({ ADMIN_TOKEN: 'admin' })).toMatch(
    /^WARNING: ADMIN_TOKEN is 5 characters and HOST=0\.0\.0\.0 takes connections from other machines: [^\n]*HOST=127\.0\.0\.1\.$/m,
  );
  // As README has it now.
  expect(await started({ ADMIN_TOKEN: 'admin', HOST: '127.0.0.1' })).not.toContain('ADMIN_TOKEN');
}, 60_000);
