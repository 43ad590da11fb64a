/**
 * Renders a flow's SVG to PNG with a local Chromium, through playwright-core. Used only by
 * `baton flow graph --format png`: never at run time, and never with the network (the SVG is
 * standalone and the browser is started with background networking off).
 * @module
 */
import { existsSync } from 'node:fs';
import { BatonError } from '../errors.ts';

/** Where Debian's `chromium` package puts the browser. */
export const CHROMIUM_PATH = '/usr/bin/chromium';
export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
];

interface PlaywrightCore {
  chromium: {
    launch(opts: { executablePath: string; args: string[]; headless: boolean }): Promise<{
      newPage(opts: { deviceScaleFactor: number; viewport: { width: number; height: number } }): Promise<{
        setContent(html: string): Promise<void>;
        locator(sel: string): { screenshot(opts: { omitBackground: boolean }): Promise<Buffer> };
      }>;
      close(): Promise<void>;
    }>;
  };
}

/**
 * The SVG drawn at `scale` times its size, as PNG bytes.
 * @throws BatonError `BATON_ERR_RENDER_UNAVAILABLE` when Chromium or playwright-core is missing.
 */
export async function renderSvgToPng(
  svg: string,
  opts: { scale?: number; chromium?: string } = {},
): Promise<Buffer> {
  const executablePath = opts.chromium ?? CHROMIUM_PATH;
  if (!existsSync(executablePath)) {
    throw new BatonError(
      'BATON_ERR_RENDER_UNAVAILABLE',
      `PNG needs Chromium at ${executablePath} (apt-get install chromium)`,
    );
  }
  let pw: PlaywrightCore;
  try {
    pw = await import('playwright-core');
  } catch (err) {
    throw new BatonError(
      'BATON_ERR_RENDER_UNAVAILABLE',
      'PNG needs the playwright-core package (npm install playwright-core)',
      {
        cause: err,
      },
    );
  }
  const size = /<svg[^>]*\bwidth="(\d+)"[^>]*\bheight="(\d+)"/.exec(svg);
  const width = Number(size?.[1] ?? 800);
  const height = Number(size?.[2] ?? 600);
  const browser = await pw.chromium.launch({ executablePath, args: CHROMIUM_ARGS, headless: true });
  try {
    const page = await browser.newPage({
      deviceScaleFactor: opts.scale ?? 2,
      viewport: { width: width + 16, height: height + 16 },
    });
    await page.setContent(
      `<!doctype html><html><head><meta charset="utf-8"><style>body{margin:0;background:#fff}svg{display:block}</style></head><body>${svg}</body></html>`,
    );
    return await page.locator('svg').screenshot({ omitBackground: false });
  } finally {
    await browser.close();
  }
}
