/**
 * Browser suite: the flow map rendered to PNG by a real Chromium, saved under test-output/.
 * In CI a missing Chromium fails the suite; elsewhere it is skipped with a warning.
 */
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { orderFlow } from '../../src/bots/order.ts';
import { run } from '../../src/cli/index.ts';
import { renderFlowSvg } from '../../src/graph/index.ts';
import { CHROMIUM_PATH, renderSvgToPng } from '../../src/graph/png.ts';

const haveChromium = existsSync(CHROMIUM_PATH);
if (!haveChromium && !process.env.CI) {
  console.warn(
    `\n!!! browser suite SKIPPED: no Chromium at ${CHROMIUM_PATH} (apt-get install -y chromium)\n`,
  );
}
const OUT = resolve(import.meta.dirname, '../../test-output');

/** Width and height from a PNG's IHDR chunk. */
function pngSize(png: Buffer): { width: number; height: number } {
  expect(png.subarray(0, 8)).toEqual(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]));
  expect(png.subarray(12, 16).toString('latin1')).toBe('IHDR');
  return { width: png.readUInt32BE(16), height: png.readUInt32BE(20) };
}

describe.skipIf(!haveChromium && !process.env.CI)('flow graph PNG (Chromium)', () => {
  it('renders the reference bot at twice the SVG size and saves it as an artefact', async () => {
    const svg = renderFlowSvg(orderFlow, { counts: { choose_product: { sessions: 4, oldestMs: 30_000 } } });
    const [, w, h] = /width="(\d+)" height="(\d+)"/.exec(svg)!;
    const png = await renderSvgToPng(svg);
    mkdirSync(OUT, { recursive: true });
    writeFileSync(join(OUT, 'flow-order.png'), png);
    expect(pngSize(png)).toEqual({ width: Number(w) * 2, height: Number(h) * 2 });
    expect(png.length).toBeGreaterThan(10_000);
  });

  it('baton flow graph --format png writes a PNG file', async () => {
    mkdirSync(OUT, { recursive: true });
    const file = join(OUT, 'flow-order-cli.png');
    expect(await run(['flow', 'graph', 'order', '--format', 'png', '--output', file], () => undefined)).toBe(
      0,
    );
    const { readFileSync } = await import('node:fs');
    expect(pngSize(readFileSync(file)).width).toBeGreaterThan(200);
  });
});

describe('flow graph PNG without a browser', () => {
  it('exits 1 with one line when Chromium is missing', async () => {
    await expect(
      renderSvgToPng('<svg xmlns="http://www.w3.org/2000/svg"/>', { chromium: '/nonexistent/chromium' }),
    ).rejects.toThrow(/^PNG needs Chromium at \/nonexistent\/chromium/);
  });
});
