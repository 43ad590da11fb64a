/**
 * The container build and deploy/compose.yaml: Redis with AOF, PostgreSQL, one ingress and two
 * workers come up, a signed webhook is accepted and its session reaches the first step.
 * Needs a usable Docker daemon (and network for the images); skipped with a notice otherwise.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { signMetaBody } from '../../src/providers/index.ts';
import { text, webhook } from '../support/payloads.ts';
import { childEnv, freePort } from '../support/procs.ts';

const ROOT = resolve(import.meta.dirname, '../..');
const COMPOSE = resolve(ROOT, 'deploy/compose.yaml');

function dockerProblem(): string | null {
  const info = spawnSync('docker', ['info', '--format', '{{.ServerVersion}}'], {
    encoding: 'utf8',
    timeout: 15_000,
  });
  if (info.error) return `docker: ${info.error.message}`;
  if (info.status !== 0) return `docker info: ${(info.stderr || info.stdout).trim().split('\n')[0]}`;
  const compose = spawnSync('docker', ['compose', 'version'], { encoding: 'utf8', timeout: 15_000 });
  if (compose.status !== 0) return 'docker compose is not installed';
  return null;
}

const problem = dockerProblem();
if (problem !== null) {
  console.warn(`\n!!! SKIPPING the Docker compose test: no usable Docker (${problem}) !!!\n`);
}

describe.skipIf(problem !== null)('deploy/compose.yaml', () => {
  it('builds, starts Redis + PostgreSQL + 1 ingress + 2 workers, and serves a conversation', async () => {
    const project = `baton-test-${randomBytes(4).toString('hex')}`;
    const port = await freePort();
    const secret = randomBytes(12).toString('hex');
    const env = childEnv({
      BATON_PORT: String(port),
      WHATSAPP_APP_SECRET: secret,
      ADMIN_TOKEN: 'compose-test',
      WHATSAPP_API_BASE_URL: 'http://127.0.0.1:9/unreachable',
      ...(process.env.DOCKER_HOST !== undefined ? { DOCKER_HOST: process.env.DOCKER_HOST } : {}),
    });
    const compose = (...args: string[]): string =>
      execFileSync('docker', ['compose', '-f', COMPOSE, '-p', project, ...args], {
        cwd: ROOT,
        env,
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'pipe'],
        timeout: 900_000,
      });
    try {
      compose('up', '-d', '--build', '--wait');
      const ps = compose('ps', '--format', '{{.Service}} {{.State}}');
      expect(ps.match(/^worker running$/gm)).toHaveLength(2);
      expect(ps).toMatch(/^ingress running$/m);
      const raw = Buffer.from(
        JSON.stringify(webhook([text('15550001234', 'hi', Math.floor(Date.now() / 1000))])),
      );
      const base = `http://127.0.0.1:${port}`;
      const r = await fetch(`${base}/webhooks/whatsapp`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-hub-signature-256': signMetaBody(raw, secret) },
        body: new Uint8Array(raw),
      });
      expect(r.status).toBe(200);
      let step: unknown;
      for (let i = 0; i < 100 && step !== 'ask_name'; i++) {
        await new Promise((res) => setTimeout(res, 200));
        const s = await fetch(`${base}/admin/api/sessions/15550001234`, {
          headers: { authorization: 'Bearer compose-test' },
        });
        if (s.status === 200) step = ((await s.json()) as { current_step?: unknown }).current_step;
      }
      expect(step).toBe('ask_name');
    } finally {
      spawnSync('docker', ['compose', '-f', COMPOSE, '-p', project, 'down', '-v', '--remove-orphans'], {
        cwd: ROOT,
        env,
        timeout: 120_000,
      });
    }
  }, 900_000);
});
