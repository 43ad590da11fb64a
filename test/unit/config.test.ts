import { describe, expect, it } from 'vitest';
import { loadConfig, parseDurationSeconds } from '../../src/config/index.ts';
import { ConfigError } from '../../src/errors.ts';

describe('config', () => {
  it('has the SPEC defaults and is frozen', () => {
    const c = loadConfig({});
    expect(c).toMatchObject({
      port: 3000,
      host: '0.0.0.0',
      bufferMs: 500,
      lockTtlMs: 5000,
      sessionTtlSec: 86_400,
      dedupeTtlSec: 604_800,
      maxRetries: 3,
      dataDir: './data',
    });
    expect(c.whatsapp.apiBaseUrl).toBe('https://graph.facebook.com/v21.0');
    expect(Object.isFrozen(c)).toBe(true);
    expect(Object.isFrozen(c.whatsapp)).toBe(true);
  });

  it('takes a blank number or duration for unset alike: the default (outside test QA11-F9)', () => {
    const blank = {
      BATON_BUFFER_MS: ' ',
      BATON_SESSION_TTL: ' ',
      BATON_DEDUPE_TTL: '',
      BATON_RETENTION: '  ',
    };
    expect(loadConfig(blank)).toMatchObject({
      bufferMs: 500,
      sessionTtlSec: 86_400,
      dedupeTtlSec: 604_800,
      retentionSec: 30 * 86_400,
    });
  });

  it.each([
    ['90', 90],
    ['90s', 90],
    ['30m', 1800],
    ['24h', 86_400],
    ['7d', 604_800],
  ])('parses the duration %s', (raw, seconds) => {
    expect(parseDurationSeconds('X', raw)).toBe(seconds);
  });

  it.each([
    [{ PORT: 'abc' }, 'PORT'],
    [{ PORT: '70000' }, 'PORT'],
    [{ BATON_BUFFER_MS: '-1' }, 'BATON_BUFFER_MS'],
    [{ BATON_LOCK_TTL_MS: 'soon' }, 'BATON_LOCK_TTL_MS'],
    [{ BATON_SESSION_TTL: '1 week' }, 'BATON_SESSION_TTL'],
    [{ BATON_DEDUPE_TTL: '0' }, 'BATON_DEDUPE_TTL'],
    [{ BATON_MAX_RETRIES: '1.5' }, 'BATON_MAX_RETRIES'],
    [{ WHATSAPP_API_BASE_URL: 'not a url' }, 'WHATSAPP_API_BASE_URL'],
    [{ REDIS_URL: 'redis://localhost:6379' }, 'DATABASE_URL'],
    [{ DATABASE_URL: 'postgres://localhost/db' }, 'REDIS_URL'],
    [{ BATON_SYNC_MODE: 'sometimes' }, 'BATON_SYNC_MODE'],
    [{ LOG_LEVEL: 'loud' }, 'LOG_LEVEL'],
    [{ AMQP_URL: 'http://127.0.0.1:5672' }, 'AMQP_URL'],
    [{ AMQP_URL: 'guest@rabbit' }, 'AMQP_URL'],
    [{ BATON_AMQP_QUEUE: 'amq.intake' }, 'BATON_AMQP_QUEUE'],
    [{ BATON_AMQP_QUEUE: 'two words' }, 'BATON_AMQP_QUEUE'],
    // What no sender or client can use: caught at start, not at the first send.
    [{ WHATSAPP_API_BASE_URL: 'ftp://graph.example' }, 'WHATSAPP_API_BASE_URL'],
    [{ WHATSAPP_API_BASE_URL: 'javascript:alert(1)' }, 'WHATSAPP_API_BASE_URL'],
    [{ WASENDER_API_BASE_URL: 'file:///etc/passwd' }, 'WASENDER_API_BASE_URL'],
    [{ BATON_ALERT_WEBHOOK_URL: 'ftp://chat.example/hook' }, 'BATON_ALERT_WEBHOOK_URL'],
    // A base Baton appends paths to: a query or fragment took them (outside test QA54-F2).
    [{ WHATSAPP_API_BASE_URL: 'https://graph.example/v21.0?appsecret_proof=abc' }, 'WHATSAPP_API_BASE_URL'],
    [{ WHATSAPP_API_BASE_URL: 'https://graph.example/v21.0#x' }, 'WHATSAPP_API_BASE_URL'],
    [{ WASENDER_API_BASE_URL: 'https://www.wasenderapi.com?x=1' }, 'WASENDER_API_BASE_URL'],
    [{ WASENDER_API_BASE_URL: 'https://www.wasenderapi.com/api' }, 'WASENDER_API_BASE_URL'],
    [{ WASENDER_API_BASE_URL: 'https://www.wasenderapi.com/api/' }, 'WASENDER_API_BASE_URL'],
    [{ REDIS_URL: 'http://127.0.0.1:6379', DATABASE_URL: 'postgres://h/db' }, 'REDIS_URL'],
    [{ REDIS_URL: 'redis://127.0.0.1:6379', DATABASE_URL: 'mysql://h/db' }, 'DATABASE_URL'],
    [{ ADMIN_TOKEN: 'two words' }, 'ADMIN_TOKEN'],
    [{ BATON_SESSION_TTL: '1'.padEnd(400, '0') }, 'BATON_SESSION_TTL'],
    [{ BATON_DEDUPE_TTL: '36501d' }, 'BATON_DEDUPE_TTL'],
    [{ BATON_SESSION_TTL: '0.0001ms' }, 'BATON_SESSION_TTL'],
    [{ BATON_TRUST_PROXY: 'yes' }, 'BATON_TRUST_PROXY'],
    [{ BATON_TRUST_PROXY: '10.0.0.0/33' }, 'BATON_TRUST_PROXY'],
    [{ BATON_TRUST_PROXY: '17' }, 'BATON_TRUST_PROXY'],
    // Schemas PostgreSQL keeps for itself (Baton's tables went into information_schema: QA42-F5).
    [{ BATON_PG_SCHEMA: 'information_schema' }, 'BATON_PG_SCHEMA'],
    [{ BATON_PG_SCHEMA: 'pg_catalog' }, 'BATON_PG_SCHEMA'],
    [{ BATON_PG_SCHEMA: 'pg_x' }, 'BATON_PG_SCHEMA'],
  ])('refuses %o with one line naming %s', (env, name) => {
    let err: unknown;
    try {
      loadConfig(env);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).variable).toBe(name);
    expect((err as Error).message.startsWith(`${name}: `)).toBe(true);
    expect((err as Error).message).not.toContain('\n');
  });

  it.each([
    [undefined, false],
    ['false', false],
    ['true', 1],
    ['2', 2],
    ['10.0.0.1, 192.168.0.0/16, ::1', ['10.0.0.1', '192.168.0.0/16', '::1']],
  ])('BATON_TRUST_PROXY=%s trusts %o (never "any X-Forwarded-For")', (raw, trust) => {
    expect(loadConfig(raw === undefined ? {} : { BATON_TRUST_PROXY: raw }).trustProxy).toEqual(trust);
  });

  it("keeps credentials out of a bad URL's message", () => {
    expect(() => loadConfig({ AMQP_URL: 'amqp://guest:s3cret@127.0.0.1:notaport' })).toThrow(
      'AMQP_URL: "amqp://***@127.0.0.1:notaport" is not a URL',
    );
    expect(() => loadConfig({ REDIS_URL: 'redis://:s3cret@host:port', DATABASE_URL: 'x' })).toThrow(
      /\*\*\*@/,
    );
  });
});
