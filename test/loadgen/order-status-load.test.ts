/**
 * `baton load --flow examples/order-status --shop-stub --script`: the second example, with its
 * effects against the shop stub, under chaos: a clean verdict, one cancel effect per user.
 */
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runLoadCommand } from '../../src/cli/load.ts';

const ROOT = resolve(import.meta.dirname, '../..');
const EXAMPLE = resolve(ROOT, 'examples/order-status');
const SCRIPT = resolve(ROOT, 'loadgen/scripts/order-status.json');

describe.skipIf(!existsSync(EXAMPLE))('baton load against order-status', () => {
  it('20 users look an order up and cancel it, under chaos: clean, and the shop sees one cancel each', async () => {
    let out = '';
    let err = '';
    const code = await runLoadCommand(
      {
        start: true,
        flow: EXAMPLE,
        shopStub: true,
        script: SCRIPT,
        users: '20',
        chaos: true,
        progress: false,
        seed: '5',
      },
      { out: (l) => (out += `${l}\n`), err: (t) => (err += t), tty: false, env: { BATON_BUFFER_MS: '1000' } },
    );
    expect(err).toContain('each playing');
    expect(out).toContain('verdict: CLEAN (20/20 users completed the script)');
    expect(out).toContain(
      'shop stub: 20 lookups, 20 cancel effects, 0 orders cancelled by two effects, 0 requests without Idempotency-Key',
    );
    expect(code).toBe(0);
  }, 60_000);
});
