/**
 * One owner per data directory: a second `baton start` on the same BATON_DATA_DIR exits 1 with
 * one line naming the directory and the holder's PID; a lock left by a killed process is
 * taken over. `baton ingress` and `baton worker` refuse embedded mode (exit 2, one line). A start
 * that fails after its configuration was read (the port taken, a store unreachable) exits 1 with
 * one line, and leaves the directory free.
 */
import { spawn, spawnSync } from 'node:child_process';
import { createServer } from 'node:net';
import { randomBytes } from 'node:crypto';
import {
  closeSync,
  existsSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  statSync,
  utimesSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { EmbeddedBackend } from '../../src/backends/embedded/index.ts';
import { BatonError } from '../../src/errors.ts';
import { newKey, text } from '../distributed/fixtures.ts';
import { text as payloadText, webhook } from '../support/payloads.ts';
import { freePort, runBaton, spawnBaton, type BatonProcess } from '../support/procs.ts';
import { DATABASE_URL, dropIsolation, isolation, REDIS_URL, servicesUp } from '../support/services.ts';

const dirs: string[] = [];
const procs: BatonProcess[] = [];
let cleanupZombie = (): void => undefined;
afterEach(async () => {
  cleanupZombie();
  for (const p of procs.splice(0)) await p.stop('SIGKILL');
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
const tempDir = (): string => {
  const d = mkdtempSync(join(tmpdir(), 'baton-own-'));
  dirs.push(d);
  return d;
};
const env = async (dir: string): Promise<Record<string, string>> => ({
  PORT: String(await freePort()),
  HOST: '127.0.0.1',
  BATON_DATA_DIR: dir,
});

/** The PID of a process that has exited. */
function deadPid(): number {
  const r = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], {
    encoding: 'utf8',
  });
  return Number(r.stdout);
}

describe('the start line', () => {
  it('says a process on every address listens on every address, and where to reach it here (outside test QA77-F6); the CLI beside it names an unknown user (F9)', async () => {
    const e: Record<string, string> = { ...(await env(tempDir())), HOST: '0.0.0.0' };
    const port = e['PORT']!;
    const p = await spawnBaton(['start'], e);
    procs.push(p);
    expect(p.output()).toContain(
      `listening on http://0.0.0.0:${port} (every address; on this machine http://127.0.0.1:${port})`,
    );
    // Asked through it (its admin API), an unknown user is named as a one-shot command names it
    // (outside test QA77-F9: "No such session" here, "no session for <id>" there).
    const r = await runBaton(['session', 'show', '15550000404'], e);
    expect(r).toMatchObject({ code: 1, stderr: 'baton: No session for 15550000404\n' });
  });
});

describe('one process per data directory', () => {
  it('a second baton start on the same directory exits 1 naming the directory and the holder', async () => {
    const dir = tempDir();
    const first = await spawnBaton(['start'], await env(dir));
    procs.push(first);
    const second = await runBaton(['start'], await env(dir));
    expect(second.code).toBe(1);
    const lines = second.stderr.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain(resolve(dir));
    expect(lines[0]).toContain(`process ${first.child.pid}`);
    // The first one is untouched and still serves.
    const port = /listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(first.output())![1];
    expect((await fetch(`http://127.0.0.1:${port}/readyz`)).status).toBe(200);
    // Stopped gracefully, it leaves the directory free.
    expect(await first.stop()).toBe(0);
    procs.pop();
    expect(existsSync(join(dir, 'baton.lock'))).toBe(false);
    procs.push(await spawnBaton(['start'], await env(dir)));
  });

  it('a lock left by a SIGKILLed process is stale and taken over', async () => {
    const dir = tempDir();
    const first = await spawnBaton(['start'], await env(dir));
    expect(await first.stop('SIGKILL')).toBe(null);
    expect(existsSync(join(dir, 'baton.lock'))).toBe(true);
    procs.push(await spawnBaton(['start'], await env(dir)));
  });

  it('in one process too: a second backend on the directory is refused until the first closes', async () => {
    const dir = tempDir();
    const a = new EmbeddedBackend({ dataDir: dir, bufferMs: 0, dedupeTtlSec: 60 });
    let refused: unknown;
    try {
      new EmbeddedBackend({ dataDir: dir, bufferMs: 0, dedupeTtlSec: 60 });
    } catch (err) {
      refused = err;
    }
    expect(refused).toBeInstanceOf(BatonError);
    expect((refused as BatonError).code).toBe('BATON_ERR_DATA_DIR_LOCKED');
    await a.close();
    await new EmbeddedBackend({ dataDir: dir, bufferMs: 0, dedupeTtlSec: 60 }).close();
  });

  it('a lock naming a killed process its parent has not reaped yet (a zombie) does not block a start', async () => {
    // `sh` forks a short `sleep`, then becomes a long one that never reaps it: a zombie for 5 s.
    const parent = spawn('sh', ['-c', 'sleep 0.05 & echo $!; exec sleep 5'], {
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    cleanupZombie = () => parent.kill('SIGKILL');
    const pid = Number(
      await new Promise<string>((r) => parent.stdout.once('data', (d: Buffer) => r(String(d)))),
    );
    await new Promise((r) => setTimeout(r, 300));
    expect(readFileSync(`/proc/${pid}/stat`, 'utf8')).toMatch(/\) Z /);
    const dir = tempDir();
    writeFileSync(join(dir, 'baton.lock'), JSON.stringify({ pid, host: hostname() }));
    await new EmbeddedBackend({ dataDir: dir, bufferMs: 0, dedupeTtlSec: 60 }).close();
  });

  it('keeps the store readable by its owner only: the directory it creates, the database and its WAL', async () => {
    const dir = join(tempDir(), 'data');
    const b = new EmbeddedBackend({ dataDir: dir, bufferMs: 0, dedupeTtlSec: 60 });
    try {
      await b.init();
      await b.ingest({ messages: [text(newKey(), 'hi')], statuses: [] }); // the WAL exists once written
      expect(statSync(dir).mode & 0o777).toBe(0o700);
      for (const f of ['baton.sqlite', 'baton.sqlite-wal'])
        expect(statSync(join(dir, f)).mode & 0o777, f).toBe(0o600);
    } finally {
      await b.close();
    }
  });

  it('a lock the kernel no longer holds is taken over, though it names another host or a live process of an earlier boot (outside test QA94-F2)', async () => {
    const locks = [
      // A container recreated on the same volume: another hostname, and PID 1 again.
      { pid: 1, host: 'a-container-since-removed', since: new Date().toISOString() },
      // After a reboot the PID may be another program's (here: this test's own process).
      { pid: process.ppid, host: hostname(), since: '2020-01-01T00:00:00.000Z' },
    ];
    for (const lock of locks) {
      const dir = tempDir();
      writeFileSync(join(dir, 'baton.lock'), JSON.stringify(lock));
      const b = new EmbeddedBackend({ dataDir: dir, bufferMs: 0, dedupeTtlSec: 3600, pacing: false });
      await b.init();
      expect(JSON.parse(readFileSync(join(dir, 'baton.lock'), 'utf8'))).toMatchObject({ pid: process.pid });
      await b.close();
    }
  });

  it('a running process keeps the directory when its lock file is removed: a second start is refused at once', async () => {
    const dir = tempDir();
    const first = await spawnBaton(['start'], await env(dir));
    procs.push(first);
    rmSync(join(dir, 'baton.lock'));
    const second = await runBaton(['start'], await env(dir));
    expect(second.code).toBe(1);
    expect(second.stderr).toContain(resolve(dir));
    expect(second.stderr).toContain('is in use by');
  });

  it('a lock naming a dead PID, or garbage, does not block a start', async () => {
    for (const content of [JSON.stringify({ pid: deadPid(), host: hostname() }), 'not json']) {
      const dir = tempDir();
      writeFileSync(join(dir, 'baton.lock'), content);
      const old = new Date(Date.now() - 60_000);
      utimesSync(join(dir, 'baton.lock'), old, old);
      const b = new EmbeddedBackend({ dataDir: dir, bufferMs: 0, dedupeTtlSec: 60 });
      await b.close();
    }
  });
});

describe('the data directory taken from under a running process', () => {
  const post = (port: string, u: string, body: string, ts: number): Promise<number> =>
    fetch(`http://127.0.0.1:${port}/webhooks/whatsapp`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(webhook([payloadText(u, body, ts)])),
    }).then((r) => r.status);

  it('deleted: no webhook is answered 200 after it, and /readyz says so (outside test QA94-F1)', async () => {
    const dir = tempDir();
    const p = await spawnBaton(['start'], await env(dir));
    procs.push(p);
    const port = /listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(p.output())![1]!;
    expect(await post(port, '15550009001', 'hi', 1_750_000_000)).toBe(200);
    rmSync(dir, { recursive: true, force: true });
    // Stored into a file no restart finds: refused (Meta keeps it and sends it again), not 200.
    expect(await post(port, '15550009001', 'Jane', 1_750_000_001)).toBe(503);
    expect(await post(port, '15550009002', 'hi', 1_750_000_001)).toBe(503);
    const ready = await fetch(`http://127.0.0.1:${port}/readyz`);
    expect(ready.status).toBe(503);
    expect(((await ready.json()) as { checks: Record<string, boolean> }).checks.sqlite).toBe(false);
  });

  it('its lock removed: written again within a second, so a second start is still refused (outside test QA94-F3)', async () => {
    const dir = tempDir();
    const first = await spawnBaton(['start'], await env(dir));
    procs.push(first);
    rmSync(join(dir, 'baton.lock'));
    await new Promise((r) => setTimeout(r, 1500));
    expect(JSON.parse(readFileSync(join(dir, 'baton.lock'), 'utf8'))).toMatchObject({ pid: first.child.pid });
    const second = await runBaton(['start'], await env(dir));
    expect(second.code).toBe(1);
    expect(second.stderr).toContain(`process ${first.child.pid}`);
  });

  it('its lock taken by another process meanwhile: this one writes nothing more', async () => {
    const dir = tempDir();
    const b = new EmbeddedBackend({ dataDir: dir, bufferMs: 0, dedupeTtlSec: 3600, pacing: false });
    await b.init();
    try {
      const key = newKey();
      await b.ingest({ messages: [text(key, 'one')], statuses: [] });
      writeFileSync(join(dir, 'baton.lock'), JSON.stringify({ pid: 1, host: hostname() }));
      await new Promise((r) => setTimeout(r, 1500));
      await expect(b.ingest({ messages: [text(key, 'two')], statuses: [] })).rejects.toThrow(
        /taken by process 1 on .*writes nothing more/,
      );
      expect(await b.health()).toEqual({ sqlite: false });
    } finally {
      await b.close();
    }
  });
});

describe('ingress and worker need distributed mode', () => {
  it.each([['ingress'], ['worker']])(
    'baton %s without REDIS_URL/DATABASE_URL exits 2 with one line',
    async (cmd) => {
      const r = await runBaton([cmd], await env(tempDir()));
      expect(r.code).toBe(2);
      const lines = r.stderr.trim().split('\n');
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatch(/needs distributed mode: set REDIS_URL and DATABASE_URL/);
    },
  );
});

describe('session commands take ids as the admin API does', () => {
  it.each([
    [['session', 'show', 'a b']],
    [['session', 'reset', '']],
    [['lock', 'clear', '1', '--channel', 'x\ty']],
  ])('baton %j is a usage error: exit 2, one line, no store opened', async (args) => {
    const dir = tempDir();
    const r = await runBaton(args, await env(dir));
    expect(r.code).toBe(2);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/is not an id/);
    expect(existsSync(join(dir, 'baton.sqlite'))).toBe(false);
  });
});

describe('a start that fails exits, and frees what it took', () => {
  it('a damaged store: exit 1 with one line naming it, before listening; an empty one is said to be new (outside test QA94-F4)', async () => {
    const dir = tempDir();
    const b = new EmbeddedBackend({ dataDir: dir, bufferMs: 0, dedupeTtlSec: 3600, pacing: false });
    await b.init();
    const key = newKey();
    for (let i = 0; i < 40; i++)
      await b.ingest({ messages: [text(key, `message ${i} ${'x'.repeat(400)}`)], statuses: [] });
    await b.close();
    const file = join(dir, 'baton.sqlite');
    // Garbage over the third page (SQLite's default page size is 4 KiB).
    const fd = openSync(file, 'r+');
    writeSync(fd, randomBytes(4096), 0, 4096, 2 * 4096);
    closeSync(fd);
    const r = await runBaton(['start'], await env(dir));
    expect(r.code).toBe(1);
    const lines = r.stderr.trim().split('\n');
    expect(lines, r.stderr).toHaveLength(1);
    expect(lines[0]).toContain(`the SQLite store ${file} is damaged`);
    expect(r.stdout).not.toContain('listening');
    expect(existsSync(join(dir, 'baton.lock'))).toBe(false);

    // An empty file (or none): a new store, and the start says so.
    writeFileSync(file, '');
    rmSync(`${file}-wal`, { force: true });
    const p = await spawnBaton(['start'], { ...(await env(dir)), LOG_LEVEL: 'info' });
    procs.push(p);
    expect(p.output()).toContain('created a new SQLite store');
  });

  it('the port already taken: exit 1 with one line naming PORT; the directory is free again', async () => {
    const dir = tempDir();
    const taken = createServer();
    const port = await new Promise<number>((res) =>
      taken.listen(0, '127.0.0.1', () => res((taken.address() as { port: number }).port)),
    );
    try {
      const r = await runBaton(['start'], { ...(await env(dir)), PORT: String(port) }, 15_000);
      expect(r.code).toBe(1);
      const lines = r.stderr.trim().split('\n');
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatch(/PORT: 127\.0\.0\.1:\d+ is already in use/);
      expect(existsSync(join(dir, 'baton.lock'))).toBe(false);
    } finally {
      taken.close();
    }
    procs.push(await spawnBaton(['start'], await env(dir)));
  });

  /** Runs `baton <command>` in distributed mode with the port `variable` names already taken. */
  const withPortTaken = async (command: string, variable: string) => {
    const taken = createServer();
    const port = await new Promise<number>((res) =>
      taken.listen(0, '127.0.0.1', () => res((taken.address() as { port: number }).port)),
    );
    try {
      const iso = isolation();
      const r = await runBaton(
        [command],
        {
          ...(await env(tempDir())),
          REDIS_URL,
          DATABASE_URL,
          BATON_REDIS_PREFIX: iso.prefix.replace(/-/g, '_'),
          BATON_PG_SCHEMA: iso.schema,
          [variable]: String(port),
        },
        30_000,
      );
      await dropIsolation(iso.prefix.replace(/-/g, '_'), iso.schema);
      return r;
    } finally {
      taken.close();
    }
  };

  it.skipIf(!servicesUp)(
    'an ingress whose port is taken says so in one line, no warning before it',
    async () => {
      const r = await withPortTaken('ingress', 'PORT');
      expect(r.code).toBe(1);
      expect(r.stderr.trim().split('\n').at(-1)).toMatch(/PORT: 127\.0\.0\.1:\d+ is already in use/);
      // The store's connections closing on the way out are no news (outside test QA11-F3: a
      // "Redis connection error: Connection is closed." warning came first).
      expect(r.stderr).not.toMatch(/"level":(40|50)/);
    },
  );

  it.skipIf(!servicesUp)('a worker whose probe port is taken names BATON_HEALTH_PORT, not PORT', async () => {
    const r = await withPortTaken('worker', 'BATON_HEALTH_PORT');
    expect(r.code).toBe(1);
    expect(r.stderr.trim().split('\n').at(-1)).toMatch(
      /BATON_HEALTH_PORT: 127\.0\.0\.1:\d+ is already in use/,
    );
  });

  // Redis answering and PostgreSQL not: its first question at start said only "PostgreSQL is
  // unavailable (store-identity)", with no address and no variable (outside test QA89-F3).
  it.skipIf(!servicesUp)(
    'PostgreSQL unreachable behind a live Redis: named with DATABASE_URL and its address',
    async () => {
      const iso = isolation();
      const r = await runBaton(
        ['ingress'],
        {
          ...(await env(tempDir())),
          REDIS_URL,
          BATON_REDIS_PREFIX: iso.schema,
          DATABASE_URL: `postgres://postgres@127.0.0.1:${await freePort()}/test`,
        },
        30_000,
      );
      await dropIsolation(iso.schema, null);
      expect(r.code).toBe(1);
      expect(r.stderr.trim().split('\n').at(-1)).toMatch(
        /^baton: PostgreSQL is unreachable at 127\.0\.0\.1:\d+ \(DATABASE_URL\): \S/,
      );
    },
  );

  it('a store that cannot be reached: the ingress exits 1 instead of reconnecting forever', async () => {
    const r = await runBaton(
      ['ingress'],
      {
        ...(await env(tempDir())),
        REDIS_URL: `redis://127.0.0.1:${await freePort()}`,
        DATABASE_URL: `postgres://postgres@127.0.0.1:${await freePort()}/test`,
      },
      30_000,
    );
    expect(r.code).toBe(1);
    // Named as a bad setting is: the variable and the address tried.
    expect(r.stderr.trim().split('\n').at(-1)).toMatch(
      /^baton: (Redis is unreachable at 127\.0\.0\.1:\d+ \(REDIS_URL\)|PostgreSQL is unreachable at 127\.0\.0\.1:\d+ \(DATABASE_URL\)): \S/,
    );
  });
});
