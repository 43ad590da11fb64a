/**
 * An error Redis answers carries the command it refused with every argument (ioredis's
 * `ReplyError.command`): a stored message and its text among them. Logged as Baton logs errors,
 * the arguments are gone and the command's name stays (SPEC 4: message texts never appear in
 * logs at `info`; outside test QA37-F2: a Redis full to `maxmemory` put users' texts in the 503
 * log lines).
 */
import { Writable } from 'node:stream';
import { Redis } from 'ioredis';
import pino from 'pino';
import { afterAll, expect, it } from 'vitest';
import { serializeError } from '../../src/app.ts';
import { REDIS_URL, describeServices } from '../support/services.ts';

describeServices('errors Redis answers, in the logs', () => {
  const redis = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 });
  afterAll(() => redis.quit());

  it('name the command, never its arguments', async () => {
    const text = 'Jane Smith, 12 Private Road';
    // A real refusal: SET with an option Redis does not know.
    const err = await redis.call('SET', 'baton-test:error-logs', JSON.stringify({ body: text }), 'NOPE').then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(Error);
    expect(JSON.stringify((err as { command?: unknown }).command)).toContain(text);
    const lines: string[] = [];
    const log = pino(
      { serializers: { err: serializeError } },
      new Writable({
        write(chunk: Buffer, _enc, done) {
          lines.push(chunk.toString('utf8'));
          done();
        },
      }),
    );
    // As the ingress logs a webhook it could not store, the error itself and as a cause.
    log.error({ err }, 'webhook could not be stored; answering 503 so the sender retries');
    log.error({ err: new Error('intake failed', { cause: err }) }, 'wrapped');
    expect(lines).toHaveLength(2);
    for (const line of lines) {
      expect(line).not.toContain('Jane Smith');
      expect(line).toContain('syntax error');
    }
    expect(JSON.parse(lines[0]!).err.command).toEqual({ name: 'SET', args: '[3 arguments]' });
  });
});
