/** `baton flow graph --flows <module>` draws a flow of the author's own module, as `simulate --flows` serves it. */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, expect, it, vi, type MockInstance } from 'vitest';
import { run } from '../../src/cli/index.ts';

let stderr: MockInstance<typeof process.stderr.write>;

beforeEach(() => {
  stderr = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
  // The example checks its shop URL when it is imported; drawing calls nothing.
  vi.stubEnv('ORDER_API_URL', 'http://shop.invalid');
});

afterEach(() => {
  vi.restoreAllMocks();
  vi.unstubAllEnvs();
});

it('draws a flow of the module --flows names', async () => {
  const out: string[] = [];
  expect(
    await run(['flow', 'graph', 'order_status', '--flows', 'examples/order-status'], (s) => out.push(s)),
  ).toBe(0);
  expect(out.join('\n')).toMatch(/^stateDiagram/);
  expect(out.join('\n')).toContain('[*] --> ');
});

it('a flow the module lacks names the flows it has and the --flows option', async () => {
  expect(await run(['flow', 'graph', 'hello'], () => undefined)).toBe(1);
  const line = stderr.mock.calls.map((c) => String(c[0])).join('');
  expect(line).toBe('baton: no flow "hello" (have: order; draw a flow of your own with --flows <module>)\n');
});

it('--format png to a terminal is a usage error (exit 2) naming --output; nothing is written', async () => {
  const had = Object.getOwnPropertyDescriptor(process.stdout, 'isTTY');
  Object.defineProperty(process.stdout, 'isTTY', { value: true, configurable: true });
  const written = vi.spyOn(process.stdout, 'write').mockImplementation(() => true);
  try {
    expect(await run(['flow', 'graph', 'order', '--format', 'png'], () => undefined)).toBe(2);
    expect(written).not.toHaveBeenCalled();
    const line = stderr.mock.calls.map((c) => String(c[0])).join('');
    expect(line).toContain('--format png writes binary: give --output <file>');
  } finally {
    if (had) Object.defineProperty(process.stdout, 'isTTY', had);
    else delete (process.stdout as { isTTY?: boolean }).isTTY;
  }
});

it('an --output it cannot write is one line naming it, exit 1 (outside test QA11-F5)', async () => {
  expect(
    await run(
      ['flow', 'graph', 'order', '--format', 'svg', '--output', '/no-such-dir/flow.svg'],
      () => undefined,
    ),
  ).toBe(1);
  const line = stderr.mock.calls.map((c) => String(c[0])).join('');
  expect(line).toBe('baton: cannot write --output "/no-such-dir/flow.svg": no such file or directory\n');
});

it('prints hints on stderr, the drawing on stdout as it is', async () => {
  const out: string[] = [];
  expect(await run(['flow', 'graph', 'order'], (s) => out.push(s))).toBe(0);
  expect(out.join('\n')).toMatch(/^stateDiagram/);
  // The reference bot draws without a hint.
  expect(stderr.mock.calls.map((c) => String(c[0])).join('')).toBe('');
});

it("--output's extension chooses the format when --format is not given (outside test QA32-F2)", async () => {
  const dir = mkdtempSync(join(tmpdir(), 'baton-graph-'));
  try {
    for (const [file, start] of [
      ['order.svg', '<svg'],
      ['order.mmd', 'stateDiagram'],
      ['order.txt', 'stateDiagram'],
    ] as const) {
      expect(await run(['flow', 'graph', 'order', '--output', join(dir, file)], () => undefined)).toBe(0);
      expect(readFileSync(join(dir, file), 'utf8').trimStart()).toMatch(new RegExp(`^${start}`));
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

it("--format that contradicts --output's extension is a usage error (exit 2), nothing written (outside test QA77-F5)", async () => {
  const dir = mkdtempSync(join(tmpdir(), 'baton-graph-'));
  try {
    for (const [format, file, named] of [
      ['svg', 'x.png', 'png'],
      ['mermaid', 'b.svg', 'svg'],
      ['png', 'c.mmd', 'mermaid'],
    ] as const) {
      stderr.mockClear();
      const output = join(dir, file);
      expect(
        await run(['flow', 'graph', 'order', '--format', format, '--output', output], () => undefined),
      ).toBe(2);
      expect(stderr.mock.calls.map((c) => String(c[0])).join('')).toContain(
        `--format ${format} does not match --output ${output} (a ${named} file's name)`,
      );
      expect(() => readFileSync(output)).toThrow();
    }
    // Agreeing, or a name that says no format, is drawn as asked.
    expect(
      await run(
        ['flow', 'graph', 'order', '--format', 'mermaid', '--output', join(dir, 'g.txt')],
        () => undefined,
      ),
    ).toBe(0);
    expect(readFileSync(join(dir, 'g.txt'), 'utf8')).toMatch(/^stateDiagram/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
