/**
 * `BATON_REDIS_CLUSTER`: how cluster mode is chosen and how its seed nodes are validated.
 */
import { describe, expect, it } from 'vitest';
import { parseClusterSeeds } from '../../src/backends/distributed/redis-client.ts';
import { loadConfig } from '../../src/config/index.ts';
import { ConfigError } from '../../src/errors.ts';
import { runBaton } from '../support/procs.ts';
import { DATABASE_URL, describeServices, dropIsolation, isolation, REDIS_URL } from '../support/services.ts';

const DB = { DATABASE_URL: 'postgres://postgres@127.0.0.1:5432/test' };

describe('BATON_REDIS_CLUSTER', () => {
  it('is off by default, and a single REDIS_URL stays a single node', () => {
    const c = loadConfig({ ...DB, REDIS_URL: 'redis://127.0.0.1:6379' });
    expect(c.redisCluster).toBe(false);
    expect(c.redisUrl).toBe('redis://127.0.0.1:6379');
  });

  it('takes one or several comma-separated seed nodes when true', () => {
    const c = loadConfig({
      ...DB,
      BATON_REDIS_CLUSTER: 'true',
      REDIS_URL: 'redis://10.0.0.1:7000, redis://10.0.0.2:7001',
    });
    expect(c.redisCluster).toBe(true);
    expect(c.redisUrl).toBe('redis://10.0.0.1:7000,redis://10.0.0.2:7001');
    expect(parseClusterSeeds(c.redisUrl!)).toEqual({
      nodes: [
        { host: '10.0.0.1', port: 7000 },
        { host: '10.0.0.2', port: 7001 },
      ],
      tls: false,
    });
  });

  it('carries the first seed credentials and TLS to every node', () => {
    expect(parseClusterSeeds('rediss://app:s%40cret@h1:7000,rediss://h2')).toEqual({
      nodes: [
        { host: 'h1', port: 7000 },
        { host: 'h2', port: 6379 },
      ],
      username: 'app',
      password: 's@cret',
      tls: true,
    });
  });

  it.each([
    [{ BATON_REDIS_CLUSTER: 'yes', REDIS_URL: 'redis://h:7000' }, 'BATON_REDIS_CLUSTER'],
    [{ BATON_REDIS_CLUSTER: 'true' }, 'REDIS_URL'],
    [{ BATON_REDIS_CLUSTER: 'true', REDIS_URL: 'redis://h:7000,http://h2' }, 'REDIS_URL'],
    [{ BATON_REDIS_CLUSTER: 'true', REDIS_URL: 'redis://h:7000,' }, 'REDIS_URL'],
    [{ REDIS_URL: 'redis://h:7000,redis://h2:7001' }, 'REDIS_URL'],
  ])('refuses %o with one line naming %s', (env, variable) => {
    let err: unknown;
    try {
      loadConfig({ ...DB, ...env });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).variable).toBe(variable);
    expect((err as ConfigError).message).not.toContain('\n');
  });
});

describeServices('BATON_REDIS_CLUSTER against a Redis that is not a cluster', () => {
  it('is a configuration error naming the variable, not "unreachable" (outside test QA11-F4)', async () => {
    const iso = isolation();
    const r = await runBaton(['migrate'], {
      REDIS_URL,
      DATABASE_URL,
      BATON_REDIS_CLUSTER: 'true',
      BATON_REDIS_PREFIX: iso.prefix.replace(/-/g, '_'),
      BATON_PG_SCHEMA: iso.schema,
    });
    await dropIsolation(iso.prefix.replace(/-/g, '_'), iso.schema);
    const { hostname, port } = new URL(REDIS_URL);
    expect(r).toMatchObject({
      code: 1,
      stderr: `baton: configuration error: BATON_REDIS_CLUSTER: the Redis at ${hostname}:${port || 6379} is not a cluster (cluster_enabled:0): unset BATON_REDIS_CLUSTER, or name cluster nodes in REDIS_URL\n`,
    });
  }, 60_000);
});
