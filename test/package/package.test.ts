/**
 * Baton installs like a library: `npm pack` makes a tarball of the compiled `dist/` (no
 * TypeScript loader needed), a plain JavaScript project that installs it imports `defineFlow`
 * and `createBaton` and serves a flow, and the `baton` bin runs the compiled CLI. Also:
 * spawned test processes never inherit the runner's store URLs.
 */
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { connect } from 'node:net';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { childEnv, freePort, spawnBaton } from '../support/procs.ts';

const ROOT = resolve(import.meta.dirname, '../..');
const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as {
  name: string;
  dependencies: Record<string, string>;
  devDependencies: Record<string, string>;
};

describe('spawned test processes', () => {
  it('get an explicit environment: the runner’s REDIS_URL / DATABASE_URL do not leak', async () => {
    const saved = { r: process.env.REDIS_URL, d: process.env.DATABASE_URL };
    process.env.REDIS_URL = 'redis://127.0.0.1:1';
    process.env.DATABASE_URL = 'postgres://nobody@127.0.0.1:1/none';
    const dir = mkdtempSync(join(tmpdir(), 'baton-env-'));
    try {
      const p = await spawnBaton(['start'], {
        PORT: String(await freePort()),
        HOST: '127.0.0.1',
        BATON_DATA_DIR: dir,
      });
      // Stopped whatever the check says: a failed one left the process serving.
      const started = p.output();
      expect(await p.stop()).toBe(0);
      expect(started).toMatch(/Baton \S+( \([0-9a-f]{12}\))? \(embedded\) listening/);
    } finally {
      for (const [k, v] of [['REDIS_URL', saved.r] as const, ['DATABASE_URL', saved.d] as const]) {
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
      }
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('the packed tarball', () => {
  let work: string;
  let app: string;
  let files: string[];

  beforeAll(() => {
    work = mkdtempSync(join(tmpdir(), 'baton-pack-'));
    // `npm pack` runs `prepare`, which builds dist/ from the current sources.
    const out = execFileSync('npm', ['pack', '--json', '--pack-destination', work], {
      cwd: ROOT,
      env: childEnv({ npm_config_update_notifier: 'false' }),
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const [info] = JSON.parse(out.slice(out.indexOf('['))) as Array<{
      filename: string;
      files: Array<{ path: string }>;
    }>;
    files = info!.files.map((f) => f.path);
    // An empty project with the tarball installed, offline: the tarball is unpacked as
    // node_modules/baton, and its runtime dependencies are linked from this checkout
    // (devDependencies such as tsx and typescript are not there).
    app = join(work, 'app');
    const nm = join(app, 'node_modules');
    mkdirSync(join(nm, pkg.name), { recursive: true });
    execFileSync('tar', [
      '-xzf',
      join(work, info!.filename),
      '-C',
      join(nm, pkg.name),
      '--strip-components=1',
    ]);
    const dev = new Set(Object.keys(pkg.devDependencies));
    for (const name of readdirSync(join(ROOT, 'node_modules'))) {
      if (name.startsWith('.') || dev.has(name) || name === 'tsx' || name === 'typescript') continue;
      if (name.startsWith('@')) {
        for (const sub of readdirSync(join(ROOT, 'node_modules', name))) {
          // A TypeScript consumer has Node's types of their own (and @types/pg needs them).
          if (dev.has(`${name}/${sub}`) && `${name}/${sub}` !== '@types/node') continue;
          mkdirSync(join(nm, name), { recursive: true });
          symlinkSync(join(ROOT, 'node_modules', name, sub), join(nm, name, sub));
        }
      } else symlinkSync(join(ROOT, 'node_modules', name), join(nm, name));
    }
    writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'app', private: true, type: 'module' }));
  }, 240_000);

  afterAll(() => rmSync(work, { recursive: true, force: true }));

  it('holds the compiled code and its types, not the sources or the tests', () => {
    expect(files).toContain('dist/index.js');
    expect(files).toContain('dist/index.d.ts');
    expect(files).toContain('bin/baton.mjs');
    expect(files.some((f) => f.endsWith('.lua'))).toBe(true);
    expect(files.some((f) => f.endsWith('.sql'))).toBe(true);
    expect(files.filter((f) => f.startsWith('src/') || f.startsWith('test/'))).toEqual([]);
    expect(existsSync(join(app, 'node_modules', 'tsx'))).toBe(false);
  });

  it('ships the docs its README links to (outside tests QA92-F5, QA97-F6: every docs/ link was dead on npm)', () => {
    const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
    // Linked, or named in code spans (`docs/errors.md`).
    const linked = new Set([...readme.matchAll(/(?:\]\(|`)(docs\/[\w.-]+\.md)/g)].map((m) => m[1]!));
    expect(linked.size).toBeGreaterThan(3);
    for (const doc of linked) expect(files, doc).toContain(doc);
  });

  it('is imported from plain JavaScript: defineFlow + createBaton serve a flow', () => {
    writeFileSync(
      join(app, 'main.js'),
      `import { createBaton, defineFlow, loadConfig } from 'baton';
const flow = defineFlow({
  id: 'hello',
  version: 1,
  start: 'greet',
  steps: { greet: { say: 'Hello!', accepts: 'any', to: ['greet'], on: (_i, c) => c.goto('greet') } },
});
const baton = await createBaton(loadConfig({ BATON_DATA_DIR: process.argv[2], ADMIN_TOKEN: 't' }), { flows: [flow] });
const health = await baton.server.inject({ method: 'GET', url: '/healthz' });
const flows = await baton.server.inject({ method: 'GET', url: '/admin/api/flows', headers: { authorization: 'Bearer t' } });
await baton.stop();
console.log(JSON.stringify({ health: health.statusCode, flows: flows.json() }));
`,
    );
    const out = execFileSync(process.execPath, ['main.js', join(work, 'data')], {
      cwd: app,
      env: childEnv({ LOG_LEVEL: 'silent' }),
      encoding: 'utf8',
    });
    const result = JSON.parse(out.trim().split('\n').at(-1)!) as { health: number; flows: unknown };
    expect(result.health).toBe(200);
    expect(JSON.stringify(result.flows)).toContain('hello');
  });

  it('`npm start` runs node itself: a SIGKILL of the npm PID leaves no server behind', async () => {
    const port = await freePort();
    const npm = spawn('npm', ['start'], {
      cwd: ROOT,
      env: childEnv({
        PORT: String(port),
        HOST: '127.0.0.1',
        BATON_DATA_DIR: join(work, 'start-data'),
        LOG_LEVEL: 'info',
      }),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    npm.stdout.on('data', (d: Buffer) => (out += d.toString()));
    npm.stderr.on('data', (d: Buffer) => (out += d.toString()));
    let serverPid: number | undefined;
    try {
      await until(
        () => /"pid":(\d+).*Server listening/.test(out),
        30_000,
        () => `npm start did not listen:\n${out}`,
      );
      serverPid = Number(/"pid":(\d+).*Server listening/.exec(out)![1]);
      expect(serverPid).not.toBe(npm.pid);
      process.kill(npm.pid!, 'SIGKILL');
      await until(
        () => !alive(serverPid!),
        10_000,
        () => `node ${serverPid} still runs after npm was killed`,
      );
      expect(await accepts(port)).toBe(false);
    } finally {
      if (serverPid !== undefined && alive(serverPid)) process.kill(serverPid, 'SIGKILL');
      npm.kill('SIGKILL');
    }
  });

  it('types the exported reference flow for a strict TypeScript consumer (its data is no `any`), whose checks of our declarations pass too', () => {
    const dir = join(app, 'typed');
    mkdirSync(dir, { recursive: true });
    writeFileSync(
      join(dir, 'consumer.ts'),
      [
        "import { orderFlow, type DataOf } from 'baton';",
        "export const ok: DataOf<typeof orderFlow> = { customer_name: 'Jane', product_id: 'sku_550e' };",
        '// @ts-expect-error a number is no customer name',
        'export const bad: DataOf<typeof orderFlow> = { customer_name: 42 };',
        '',
      ].join('\n'),
    );
    writeFileSync(
      join(dir, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: {
          strict: true,
          noEmit: true,
          // Our .d.ts files checked as the consumer's compiler checks them: the types they import
          // are installed with us, and they hold under its strictest options (outside test QA4-M1).
          skipLibCheck: false,
          exactOptionalPropertyTypes: true,
          noUncheckedIndexedAccess: true,
          types: ['node'],
          module: 'nodenext',
          moduleResolution: 'nodenext',
          target: 'es2022',
        },
        files: ['consumer.ts'],
      }),
    );
    const tsc = spawnSync(process.execPath, [join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', dir], {
      cwd: app,
      encoding: 'utf8',
    });
    expect(tsc.stdout + tsc.stderr).toBe('');
    expect(tsc.status).toBe(0);
  });

  it('runs the compiled CLI from its bin', () => {
    const out = execFileSync(
      process.execPath,
      [join(app, 'node_modules', pkg.name, 'bin', 'baton.mjs'), '--help'],
      {
        cwd: app,
        env: childEnv(),
        encoding: 'utf8',
      },
    );
    expect(out).toMatch(/Usage: baton/);
  });

  it('answers a bad `baton load` flag with a usage error (exit 2), though its generator is not installed', () => {
    const bin = join(app, 'node_modules', pkg.name, 'bin', 'baton.mjs');
    const run = (args: string[]) =>
      spawnSync(process.execPath, [bin, 'load', ...args], { cwd: app, env: childEnv(), encoding: 'utf8' });
    const bad = run(['--users', '-3']);
    expect(bad.stderr).toContain('--users must be a whole number 1..100000, got "-3"');
    expect(bad.status).toBe(2);
    // Flags it can run with reach the generator, which runs from a checkout only.
    const good = run(['--users', '3', '--admin-token', 't']);
    expect(good.stderr).toContain('baton load runs from a checkout of Baton');
    // Said as it is: the package has no generator, so installing tsx would not help (QA86-F5).
    expect(good.stderr).toContain('does not include its load generator');
    expect(good.stderr).not.toContain('install tsx');
    expect(good.status).toBe(1);
  });
});

async function until(cond: () => boolean, ms: number, why: () => string): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(why());
    await new Promise((r) => setTimeout(r, 50));
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function accepts(port: number): Promise<boolean> {
  return new Promise((res) => {
    const s = connect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      res(true);
    });
    s.once('error', () => res(false));
  });
}

describe('a TypeScript flow file loaded by the compiled CLI', () => {
  const bin = join(ROOT, 'bin/baton.mjs');
  const dir = mkdtempSync(join(tmpdir(), 'baton-ts-flow-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const flow = `import { defineFlow } from ${JSON.stringify(join(ROOT, 'dist/index.js'))};
export default defineFlow({
  id: 'hello',
  start: 'ask',
  steps: { ask: { say: 'Hi!', accepts: 'text', to: [], on: (_i, c) => c.retry() } },
});
`;
  const graph = (file: string): { status: number; out: string } => {
    try {
      const out = execFileSync(process.execPath, [bin, 'flow', 'graph', 'hello'], {
        env: { ...childEnv(), BATON_FLOWS: file },
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      return { status: 0, out };
    } catch (err) {
      const e = err as { status: number; stderr: string };
      return { status: e.status, out: e.stderr };
    }
  };

  it('loads a .mts file anywhere, and says what to do with a .ts one outside an ES module package', () => {
    writeFileSync(join(dir, 'hello.mts'), flow);
    expect(graph(join(dir, 'hello.mts'))).toMatchObject({
      status: 0,
      out: expect.stringContaining('[*] --> ask'),
    });
    writeFileSync(join(dir, 'hello.ts'), flow);
    const refused = graph(join(dir, 'hello.ts'));
    expect(refused.status).toBe(1);
    expect(refused.out).toMatch(
      /BATON_FLOWS: cannot load .*hello\.ts would load as CommonJS.*name the file \.mts/,
    );
    writeFileSync(join(dir, 'package.json'), JSON.stringify({ type: 'module' }));
    expect(graph(join(dir, 'hello.ts')).status).toBe(0);
  });

  it('names the line of a syntax error', () => {
    writeFileSync(join(dir, 'broken.mts'), 'export default {\n  a: 1,\n');
    const r = graph(join(dir, 'broken.mts'));
    expect(r.status).toBe(1);
    expect(r.out).toMatch(/broken\.m?ts:3:0: ERROR: /);
  });
});

describe('baton start whose output reader goes away (`baton start | head -1`)', () => {
  it('keeps serving, and stops on SIGTERM', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'baton-epipe-'));
    const port = await freePort();
    const child = spawn(process.execPath, [join(ROOT, 'bin/baton.mjs'), 'start'], {
      env: { ...childEnv(), PORT: String(port), HOST: '127.0.0.1', BATON_DATA_DIR: dir, LOG_LEVEL: 'info' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    try {
      await new Promise<void>((done) => child.stdout.once('data', () => done()));
      child.stdout.destroy(); // the reader is gone: the next writes fail with EPIPE
      child.stderr.destroy();
      const healthy = async (): Promise<number> => {
        for (let i = 0; i < 100; i++) {
          const r = await fetch(`http://127.0.0.1:${port}/healthz`).catch(() => null);
          if (r) return r.status;
          await new Promise((w) => setTimeout(w, 100));
        }
        return 0;
      };
      expect(await healthy()).toBe(200);
      // Requests log at info: each write meets the closed pipe.
      for (let i = 0; i < 5; i++) expect((await fetch(`http://127.0.0.1:${port}/healthz`)).status).toBe(200);
      const exited = new Promise<number | null>((done) => child.once('exit', (code) => done(code)));
      child.kill('SIGTERM');
      expect(await exited).toBe(0);
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    }
  }, 30_000);
});
