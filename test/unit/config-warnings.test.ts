/**
 * Settings valid one by one that would do nothing are said at start: alert thresholds with no
 * address, an address with no threshold, and a variable that looks like a misspelling of one
 * Baton reads (outside test QA32-F3: `BATON_ALERT_QUEUE_DEPT` left alerting silently off).
 */
import { describe, expect, it } from 'vitest';
import { configWarnings } from '../../src/cli/index.ts';
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
});
