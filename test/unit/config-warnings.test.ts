/**
 * Settings valid one by one that would do nothing are said at start: alert thresholds with no
 * address, an address with no threshold, and a variable that looks like a misspelling of one
 * Baton reads (outside test QA32-F3: `BATON_ALERT_QUEUE_DEPT` left alerting silently off).
 */
import { describe, expect, it } from 'vitest';
import { configWarnings, shortAdminTokenWarning } from '../../src/cli/index.ts';
import { loadConfig } from '../../src/config/index.ts';

const warnings = (env: Record<string, string>): string[] => configWarnings(loadConfig(env), env);

describe('configuration warnings', () => {
  it('a misspelt variable names the one Baton reads', () => {
    expect(
      warnings({ BATON_ALERT_QUEUE_DEPT: '5', BATON_ALERT_WEBHOOK_URL: 'http://hooks.example/x' }),
    ).toEqual([
      'BATON_ALERT_QUEUE_DEPT is set, but Baton reads no such variable: did you mean BATON_ALERT_QUEUE_DEPTH?',
      'BATON_ALERT_WEBHOOK_URL is set, but no alert is: set BATON_ALERT_QUEUE_DEPTH, BATON_ALERT_OLDEST_MS, BATON_ALERT_UNSENT_MS or BATON_ALERT_WORKERS.',
    ]);
    expect(warnings({ WHATSAPP_APP_SECRT: 's' })).toEqual([
      'WHATSAPP_APP_SECRT is set, but Baton reads no such variable: did you mean WHATSAPP_APP_SECRET?',
    ]);
    // Variables of other families, or nothing like Baton's, are none of its business.
    expect(warnings({ PATH: '/bin', BATON_URL_OF_MY_SCRIPT: 'x', MY_APP_PORT: '1' })).toEqual([]);
  });

  it('thresholds without an address, and an address without a threshold', () => {
    expect(warnings({ BATON_ALERT_QUEUE_DEPTH: '5', BATON_ALERT_OLDEST_MS: '1000' })).toEqual([
      'BATON_ALERT_QUEUE_DEPTH, BATON_ALERT_OLDEST_MS set, but BATON_ALERT_WEBHOOK_URL is not: no alert will be sent.',
    ]);
    expect(
      warnings({ BATON_ALERT_QUEUE_DEPTH: '5', BATON_ALERT_WEBHOOK_URL: 'http://hooks.example/x' }),
    ).toEqual([]);
    expect(warnings({})).toEqual([]);
  });

  it('BATON_ALLOW_UNSIGNED beside an app secret, which wins (outside test QA139-F2)', () => {
    expect(warnings({ BATON_ALLOW_UNSIGNED: 'true', WHATSAPP_APP_SECRET: 's3cret' })).toEqual([
      'BATON_ALLOW_UNSIGNED=true does nothing while WHATSAPP_APP_SECRET is set: POST /webhooks/whatsapp takes only requests signed with the secret (unset it to take unsigned ones).',
    ]);
    expect(warnings({ BATON_ALLOW_UNSIGNED: 'true' })).toEqual([]);
    expect(warnings({ BATON_ALLOW_UNSIGNED: 'false', WHATSAPP_APP_SECRET: 's3cret' })).toEqual([]);
  });

  it('a WASender key without the webhook secret (the route stays off; outside test QA80-F6)', () => {
    expect(warnings({ WASENDER_API_KEY: 'k' })).toEqual([
      'WASENDER_API_KEY is set, but WASENDER_WEBHOOK_SECRET is not: POST /webhooks/wasender answers 404 until it is (set it to the webhook secret of your WASender session).',
    ]);
    expect(warnings({ WASENDER_API_KEY: 'k', WASENDER_WEBHOOK_SECRET: 's' })).toEqual([]);
  });

  it('a short ADMIN_TOKEN on an address other machines reach, and only there (outside test QA64-F5)', () => {
    const tokenWarning = (env: Record<string, string>): string | undefined =>
      shortAdminTokenWarning(loadConfig(env));
    // README's quick start as it was: the default HOST is every address.
    expect(tokenWarning({ ADMIN_TOKEN: 'admin' })).toBe(
      'ADMIN_TOKEN is 5 characters and HOST=0.0.0.0 takes connections from other machines: anyone who can reach this port can guess it at the dashboard or the admin API. Use at least 16 characters, or HOST=127.0.0.1.',
    );
    for (const HOST of ['::', '192.168.1.20', 'baton.internal'])
      expect(tokenWarning({ ADMIN_TOKEN: 'x'.repeat(15), HOST }), HOST).toMatch(
        /^ADMIN_TOKEN is 15 characters and HOST=/,
      );
    for (const HOST of [
      '127.0.0.1',
      '127.1.2.3',
      '::1',
      '[::1]',
      'localhost',
      'LOCALHOST',
      '::ffff:127.0.0.1',
    ])
      expect(tokenWarning({ ADMIN_TOKEN: 'admin', HOST }), HOST).toBeUndefined();
    expect(tokenWarning({ ADMIN_TOKEN: 'x'.repeat(16) })).toBeUndefined();
    // None set: the one generated is long.
    expect(tokenWarning({})).toBeUndefined();
  });
});
