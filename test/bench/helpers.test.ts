/**
 * The bench's own helpers: repeat aggregation, the SVG writer, /proc accounting and the wire
 * counters of bench/hooks/wire-count.mjs (unit, then in a real process talking to real Redis and
 * PostgreSQL). Nothing here asserts speed.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { cpuBetween, cpuMs, readWire, withDescendants } from '../../bench/accounting.ts';
import { pgCounter, respCounter } from '../../bench/hooks/wire-count.mjs';
import { formatSpread, spread } from '../../bench/stats.ts';
import { barChart, escapeXml, niceCeil } from '../../bench/svg.ts';
import { readProfile, type CpuProfile } from '../../bench/profile.ts';
import { DATABASE_URL, describeServices, REDIS_URL } from '../support/services.ts';

const ROOT = resolve(import.meta.dirname, '../..');

describe('spread', () => {
  it('takes the median, min and max of odd and even counts', () => {
    expect(spread([3, 1, 2])).toEqual({ median: 2, min: 1, max: 3, n: 3 });
    expect(spread([4, 1, 3, 2])).toEqual({ median: 2.5, min: 1, max: 4, n: 4 });
    expect(spread([7])).toEqual({ median: 7, min: 7, max: 7, n: 1 });
  });

  it('leaves out non-finite values and is null when nothing is left', () => {
    expect(spread([NaN, 5, Infinity])).toEqual({ median: 5, min: 5, max: 5, n: 1 });
    expect(spread([])).toBeNull();
    expect(spread([NaN])).toBeNull();
  });

  it('prints median (min-max), collapsing a single run or equal bounds', () => {
    const f = (x: number): string => x.toFixed(0);
    expect(formatSpread(spread([410, 380, 455]), f)).toBe('410 (380-455)');
    expect(formatSpread(spread([410]), f)).toBe('410');
    expect(formatSpread(spread([410.2, 409.9]), f)).toBe('410');
    expect(formatSpread(null, f)).toBe('n/a');
  });
});

describe('readProfile', () => {
  // root > idle; root > handler (dist) > JSON.stringify (native) ; root > handler > ioredis write;
  // root > (garbage collector)
  const frame = (functionName: string, url = ''): CpuProfile['nodes'][number]['callFrame'] => ({
    functionName,
    url,
    lineNumber: 9,
  });
  const profile: CpuProfile = {
    nodes: [
      { id: 1, callFrame: frame('(root)'), children: [2, 3, 6] },
      { id: 2, callFrame: frame('(idle)') },
      {
        id: 3,
        callFrame: frame('commit', 'file:///x/dist/backends/distributed/commit.js'),
        children: [4, 5],
      },
      { id: 4, callFrame: frame('stringify') },
      { id: 5, callFrame: frame('sendCommand', 'file:///x/node_modules/ioredis/built/Redis.js') },
      { id: 6, callFrame: frame('(garbage collector)') },
    ],
    startTime: 0,
    endTime: 10_000,
    // 1 ms each: idle 4, stringify 3, sendCommand 2, gc 1
    samples: [2, 2, 2, 2, 4, 4, 4, 5, 5, 6],
    timeDeltas: Array.from({ length: 10 }, () => 1000),
  };

  it('attributes library and runtime work to the innermost Baton function that called it', () => {
    const r = readProfile(profile, 10);
    expect(r.totalMs).toBe(10);
    expect(r.idleShare).toBeCloseTo(0.4);
    expect(r.byBatonCaller.map((f) => [f.key, f.ms])).toEqual([
      ['commit dist/backends/distributed/commit.js:10', 5],
      ['(outside Baton) (garbage collector) (garbage collector)', 1],
    ]);
    expect(r.self.map((f) => [f.key, f.ms])).toEqual([
      ['stringify (native)', 3],
      ['sendCommand ioredis:10', 2],
      ['(garbage collector) (garbage collector)', 1],
    ]);
  });
});

describe('barChart', () => {
  it('draws one bar and one whisker per configuration, escaped, scaled to a nice axis', () => {
    const svg = barChart(
      [
        {
          title: 'msgs/s',
          unit: '1/s',
          bars: [
            { label: 'embedded <fast>', median: 400, min: 350, max: 430 },
            { label: 'baseline & co', median: 150, min: 140, max: 160 },
          ],
        },
      ],
      'caption "quoted"',
    );
    expect(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"')).toBe(true);
    expect(svg.trimEnd().endsWith('</svg>')).toBe(true);
    expect(svg.match(/<rect /g)).toHaveLength(3); // background + 2 bars
    expect(svg).toContain('embedded &lt;fast&gt;');
    expect(svg).toContain('baseline &amp; co');
    expect(svg).toContain('caption &quot;quoted&quot;');
    expect(svg).not.toContain('<fast>');
    // The axis tops at 500 (nice ceiling of 430): the 400 bar is 4/5 of the plot height.
    const heights = [...svg.matchAll(/<rect x="[^"]+" y="[^"]+" width="[^"]+" height="([^"]+)"/g)].map((m) =>
      Number(m[1]),
    );
    expect(heights[0]! / heights[1]!).toBeCloseTo(400 / 150, 1);
  });

  it('rounds axis bounds to 1, 2 or 5 times a power of ten', () => {
    expect(niceCeil(430)).toBe(500);
    expect(niceCeil(1500)).toBe(2000);
    expect(niceCeil(100)).toBe(100);
    expect(niceCeil(0)).toBe(1);
    expect(escapeXml(`<a href='x'>`)).toBe('&lt;a href=&apos;x&apos;&gt;');
  });
});

describe('respCounter', () => {
  const cmd = (...args: string[]): string =>
    `*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('')}`;

  it('counts commands across chunk boundaries, whatever the payload holds', () => {
    const wire = Buffer.from(
      cmd('SET', 'k', '*2\r\n$3\r\nfoo') + cmd('GET', 'k') + cmd('EVALSHA', 'abc', '0'),
    );
    const whole = respCounter();
    expect(whole(wire)).toBe(3);
    const names: string[] = [];
    const split = respCounter((name) => names.push(name));
    let n = 0;
    for (let i = 0; i < wire.length; i += 3) n += split(wire.subarray(i, i + 3));
    expect(n).toBe(3);
    expect(names).toEqual(['set', 'get', 'evalsha:abc']);
  });
});

describe('pgCounter', () => {
  const msg = (type: string, body: Buffer): Buffer => {
    const head = Buffer.alloc(5);
    head.write(type, 0);
    head.writeInt32BE(body.length + 4, 1);
    return Buffer.concat([head, body]);
  };
  it('skips the startup message and counts Q and E as statements, Q and S as round trips', () => {
    const startup = Buffer.alloc(8);
    startup.writeInt32BE(8, 0);
    startup.writeInt32BE(196608, 4);
    const wire = Buffer.concat([
      startup,
      msg('Q', Buffer.from('BEGIN\0')),
      msg('P', Buffer.from('\0SELECT 1\0\0\0')),
      msg('B', Buffer.alloc(8)),
      msg('E', Buffer.alloc(5)),
      msg('P', Buffer.from('\0SELECT 2\0\0\0')),
      msg('B', Buffer.alloc(8)),
      msg('E', Buffer.alloc(5)),
      msg('S', Buffer.alloc(0)),
    ]);
    const count = pgCounter();
    let statements = 0;
    let roundTrips = 0;
    for (let i = 0; i < wire.length; i += 7) {
      const r = count(wire.subarray(i, i + 7));
      statements += r.statements;
      roundTrips += r.roundTrips;
    }
    expect({ statements, roundTrips }).toEqual({ statements: 3, roundTrips: 2 });
  });
});

describe('accounting', () => {
  it('reads CPU time of live processes and finds descendants', async () => {
    const child = spawn(process.execPath, [
      '-e',
      'const t=Date.now(); while (Date.now()-t<300); setTimeout(()=>{},2000)',
    ]);
    try {
      await new Promise((r) => setTimeout(r, 600));
      expect(withDescendants([process.pid])).toContain(child.pid);
      expect(cpuMs(child.pid!)).toBeGreaterThan(0);
      expect(cpuMs(2 ** 22 + 17)).toBeNull();
      expect(
        cpuBetween(
          new Map([[1, 10]]),
          new Map([
            [1, 25],
            [2, 5],
          ]),
        ),
      ).toBe(20);
    } finally {
      child.kill('SIGKILL');
    }
  });
});

describeServices('wire-count preload in a real process', () => {
  it('counts the Redis commands, flushes and PostgreSQL statements a process sends', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'wire-test-'));
    const script = `
      import { Redis } from 'ioredis';
      import pg from 'pg';
      const r = new Redis(${JSON.stringify(REDIS_URL)});
      await r.ping();
      await r.ping();
      await r.pipeline().ping().ping().ping().exec();
      r.disconnect();
      const c = new pg.Client({ connectionString: ${JSON.stringify(DATABASE_URL)} });
      await c.connect();
      await c.query('SELECT 1');
      await c.query('SELECT $1::int', [2]);
      await c.end();
    `;
    try {
      const code = await new Promise<number | null>((done) => {
        const p = spawn(
          process.execPath,
          ['--import', './bench/hooks/wire-count.mjs', '--input-type=module', '-e', script],
          {
            cwd: ROOT,
            env: { ...process.env, BENCH_WIRE_COUNT_DIR: dir },
            stdio: 'inherit',
          },
        );
        p.on('exit', done);
      });
      expect(code).toBe(0);
      expect(readdirSync(dir)).toHaveLength(1);
      const w = readWire(dir);
      // ioredis sends a few commands of its own on connect, one write each; our five commands
      // take four writes (the pipeline of three is one flush).
      expect(w.redisCommands).toBeGreaterThanOrEqual(5);
      expect(w.redisCommands - w.redisWrites).toBe(2);
      // A simple query and an extended one (parse, bind, execute, sync); Terminate is neither.
      expect(w.pgStatements).toBe(2);
      expect(w.pgRoundTrips).toBe(2);
      expect(w.redisByCommand.ping).toBe(5);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
