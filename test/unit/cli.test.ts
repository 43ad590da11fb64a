import { describe, expect, it } from 'vitest';
import { run } from '../../src/cli/index.ts';

describe('baton CLI', () => {
  const out: string[] = [];
  const collect = (s: string): void => {
    out.push(s);
  };

  it.each([
    [['bogus']],
    [['worker', '--concurrency', '0']],
    [['worker', '--nice', '20']],
    [['worker', '--nice', '-5']],
    [['flow', 'graph', 'order', '--format', 'jpg']],
    [['session']],
  ])('exits 2 on a usage error: %o', async (argv) => {
    expect(await run(argv, collect)).toBe(2);
  });

  it('prints a flow as Mermaid', async () => {
    out.length = 0;
    expect(await run(['flow', 'graph', 'order'], collect)).toBe(0);
    expect(out.join('\n')).toContain('[*] --> ask_name');
  });

  it('exits 1 for an unknown flow', async () => {
    expect(await run(['flow', 'graph', 'nope'], collect)).toBe(1);
  });
});
