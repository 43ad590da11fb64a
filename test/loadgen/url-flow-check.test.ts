/**
 * `baton load --url ... --flow examples/order-status`: the running Baton has the flow and its own
 * ORDER_API_URL; the generator loads the module only to check the script's end step, and a module
 * that cannot load here (no ORDER_API_URL in this shell) stopped the run before any user (outside
 * test QA115-F1). It is said, and the run goes on. A file of its own: the module is loaded fresh.
 */
import { resolve } from 'node:path';
import { expect, it } from 'vitest';
import { runLoadCommand } from '../../src/cli/load.ts';

it('skips the end-step check, saying why, when the flow does not load here and Baton runs elsewhere', async () => {
  delete process.env.ORDER_API_URL;
  let err = '';
  const code = await runLoadCommand(
    {
      url: 'http://127.0.0.1:9', // nothing listens: the run itself fails, after the check
      adminToken: 't',
      flow: resolve(import.meta.dirname, '../../examples/order-status'),
      script: resolve(import.meta.dirname, '../../loadgen/scripts/order-status.json'),
      users: '1',
      timeout: '200',
      progress: false,
    },
    { out: () => undefined, err: (t) => (err += t), tty: false, env: {} },
  );
  expect(err).toContain('is not checked:');
  expect(err).toContain('does not load here (--flow: cannot load');
  expect(err).toContain("ORDER_API_URL must be the shop API's http(s) URL");
  expect(err).not.toContain('cannot load the flow');
  expect(code).not.toBe(2);
}, 30_000);
