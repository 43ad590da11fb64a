/**
 * Debian's Chromium for the browser suites (`apt-get install -y chromium`; `.ci/run` installs
 * it). Missing, a suite is skipped with a loud notice, except under CI=true, where it fails.
 */
import { existsSync } from 'node:fs';
import { chromium, type Browser } from 'playwright-core';

export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
export const haveChromium = existsSync(CHROMIUM);
if (!haveChromium) {
  const line = `browser suite needs Chromium at ${CHROMIUM} (apt-get install -y chromium)`;
  if (process.env.CI === 'true') throw new Error(`${line} (CI=true: failing)`);
  console.warn(`\n${'!'.repeat(100)}\n!! SKIPPED: ${line}\n${'!'.repeat(100)}\n`);
}

/** Launches that Chromium headless, with the flags this machine needs (and any `extraArgs`). */
export function launchChromium(extraArgs: readonly string[] = []): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', ...extraArgs],
  });
}
