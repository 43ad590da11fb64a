/** `baton load` exit codes: 2 for usage errors, 1 when the target cannot be load-tested. */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runLoadCommand, type LoadFlags } from '../../src/cli/load.ts';

function io() {
  const out: string[] = [];
  const err: string[] = [];
  return {
    out,
    err,
    io: { out: (l: string) => out.push(l), err: (t: string) => err.push(t), tty: false, env: {} },
  };
}

describe('baton load', () => {
  it.each<[string, LoadFlags]>([
    ['no admin token', { users: '3' }],
    ['bad --users', { users: 'many', adminToken: 't' }],
    ['bad --duplicates', { duplicates: '1.5', adminToken: 't' }],
    ['bad --url', { url: 'not a url', adminToken: 't' }],
    ['bad --sink-port', { sinkPort: '70000', adminToken: 't' }],
    ['bad --buffer-ms', { bufferMs: '-5', adminToken: 't' }],
    ['--flow and --flows naming two modules', { flow: 'a.ts', flows: 'b.ts', adminToken: 't' }],
  ])('%s is a usage error (2)', async (_label, flags) => {
    const o = io();
    expect(await runLoadCommand(flags, o.io)).toBe(2);
    expect(o.err.join('')).toMatch(/^baton: /);
  });

  it('names a bad value before asking for a missing token (outside test QA3-5)', async () => {
    const o = io();
    expect(await runLoadCommand({ users: 'abc' }, o.io)).toBe(2);
    expect(o.err.join('')).toContain('--users must be');
  });

  it('a BATON_BUFFER_MS it cannot read, with no --buffer-ms, is a usage error (2) naming both', async () => {
    const o = io();
    const env = { BATON_BUFFER_MS: '1s' };
    expect(await runLoadCommand({ adminToken: 't' }, { ...o.io, env })).toBe(2);
    expect(o.err.join('')).toContain('BATON_BUFFER_MS must be a whole number of milliseconds, got "1s"');
  });

  it('an unreachable target fails (1) with one clear line', async () => {
    const o = io();
    const code = await runLoadCommand(
      { url: 'http://127.0.0.1:9', adminToken: 't', users: '1', sinkPort: '0', progress: false },
      o.io,
    );
    expect(code).toBe(1);
    expect(o.err.join('')).toMatch(/does not answer at http:\/\/127\.0\.0\.1:9/);
  });

  it('takes --flows as --flow, the name simulate and flow graph give it (outside test QA86-F5)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'baton-load-flows-'));
    try {
      const flow = join(dir, 'broken.mjs');
      writeFileSync(flow, "throw new Error('boom at import');\n");
      const o = io();
      const flags: LoadFlags = { start: true, flows: flow, users: '1', sinkPort: '0', progress: false };
      expect(await runLoadCommand(flags, o.io)).toBe(1);
      expect(o.err.join('')).toContain('boom at import');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a --flow module that throws when loaded fails (1), naming --flow (outside test QA35-F6)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'baton-load-flow-'));
    try {
      const flow = join(dir, 'broken.mjs');
      writeFileSync(flow, "throw new Error('boom at import');\n");
      const script = join(dir, 'script.json');
      writeFileSync(script, JSON.stringify({ steps: [{ send: 'hi' }], end: { step: 'ask_name' } }));
      for (const flags of [
        { start: true, flow, users: '1', sinkPort: '0', progress: false },
        {
          flow,
          script,
          url: 'http://127.0.0.1:9',
          adminToken: 't',
          users: '1',
          sinkPort: '0',
          progress: false,
        },
      ] satisfies LoadFlags[]) {
        const o = io();
        expect(await runLoadCommand(flags, o.io)).toBe(1);
        expect(o.err.join('')).toMatch(/--flow: cannot load "[^"]+broken\.mjs": boom at import/);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);

  it('--start sends to the --sink-port given (a taken one fails, naming it)', async () => {
    const taken = createServer();
    await new Promise<void>((r) => taken.listen(0, '127.0.0.1', r));
    const port = (taken.address() as { port: number }).port;
    try {
      const o = io();
      const code = await runLoadCommand(
        { start: true, users: '1', sinkPort: String(port), progress: false },
        o.io,
      );
      expect(code).toBe(1);
      expect(o.err.join('')).toContain(`sink port ${port} is in use`);
    } finally {
      taken.close();
    }
  });
});
