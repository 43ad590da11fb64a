/**
 * Users in the inbox whose last message is as long as WhatsApp allows (65,536 characters) do not
 * freeze the console (outside test QA64-F3): the inbox took 10.4 s to load with one such user and
 * 45 s with three, a session page 15 s, all of it layout. The inbox shows such a text shortened;
 * a conversation shows a bounded start of each long message and keeps the rest in a closed
 * `<details>`, which Chromium does not lay out until it is opened, with line breaks offered in
 * long runs with no space (`<wbr>`) so that opening it is quick too.
 *
 * Chromium missing: skipped with a loud notice, except under CI=true, where it fails.
 */
import { type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startHarness, type Harness } from '../support/harness.ts';
import type { webhook } from '../support/payloads.ts';
import { text } from '../support/payloads.ts';
import { postMessages, signIn, waitingForAgent } from '../support/console.ts';
import { haveChromium, launchChromium } from '../support/chromium.ts';

const TS = 1_760_000_000;
/** WhatsApp's longest text message, in characters. */
const MAX = 65_536;
/** One letter carrying 65,535 combining acute accents: a single grapheme, the costliest to lay out. */
const ACCENTS = 'a' + '\u0301'.repeat(MAX - 1);
/** 65,536 letters and no space: nowhere to break a line but inside the word. */
const LETTERS = 'A'.repeat(MAX);
/** How much of a long text a page may show before the agent asks for the rest. */
const SHOWN = 3_000;
/**
 * Generous for a busy 2-core CI machine: before the fix these pages took 9 to 22 s on a quiet
 * one (opening the letters' rest 4.7 s), after it under 0.6 s. The bounded lengths below are the
 * firmer check.
 */
const LOAD_MS = 5_000;

describe.skipIf(!haveChromium)('a maximum-length message in the console (QA64-F3)', () => {
  let h: Harness;
  let browser: Browser;
  let page: Page;
  const users = { accents: '15550764001', letters: '15550764002', name: '15550764003' } as const;
  const pageErrors: string[] = [];

  const post = (...msgs: Parameters<typeof webhook>[0]): Promise<void> => postMessages(h, ...msgs);
  /** A user handed to an agent by the order flow, whose last message is `last`. */
  async function waitingWith(u: string, last: string): Promise<void> {
    await waitingForAgent(h, u, TS);
    const id = `wamid.QA64F3-${u}`;
    await post(text(u, last, TS + 3, id));
    await h.until(async () => (await h.transitions(u)).some((r) => r.message_ids.includes(id)));
  }
  /** Loads `path` and has it laid out; resolves with the time that took. */
  async function timedLoad(path: string): Promise<number> {
    const started = Date.now();
    await page.goto(`${h.url}${path}`, { waitUntil: 'load', timeout: 120_000 });
    await page.evaluate(() => document.body.getBoundingClientRect().height);
    return Date.now() - started;
  }

  beforeAll(async () => {
    h = await startHarness({ BATON_MAX_RETRIES: '0' });
    await waitingWith(users.accents, ACCENTS);
    await waitingWith(users.letters, LETTERS);
    // The order flow stores a name whole: 65,536 letters in the session's data.
    await post(text(users.name, 'hi', TS));
    await h.settled(users.name, 1);
    await post(text(users.name, LETTERS, TS + 1));
    await h.settled(users.name, 2);
    browser = await launchChromium();
    page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
    page.setDefaultTimeout(10_000);
    page.on('pageerror', (e) => pageErrors.push(String(e)));
    await signIn(h, page);
  }, 60_000);

  afterAll(async () => {
    await browser?.close();
    await h?.close();
  });

  it("a session page shows a long text in the session's data shortened, saying how long it is", async () => {
    const ms = await timedLoad(`/admin/session?wa_id=${users.name}`);
    console.log(`QA64-F3 session page, a 65,536-letter name in its data: ${ms} ms`);
    const data = (await page.locator('#state-data').textContent())!;
    expect(data.length).toBeLessThan(SHOWN);
    expect(data).toContain('(65,536 characters; the API has them all)');
    // Whole in the admin API.
    const api = (await (await h.admin(`/sessions/${users.name}`)).json()) as {
      data: { customer_name: string };
    };
    expect(api.data.customer_name).toBe(LETTERS);
    expect(ms).toBeLessThan(LOAD_MS);
  }, 180_000);

  it('the inbox shows each long last message shortened, and loads fast', async () => {
    const ms = await timedLoad('/admin/inbox');
    console.log(`QA64-F3 inbox with two 65,536-character messages: ${ms} ms`);
    for (const [u, full] of [
      [users.accents, ACCENTS],
      [users.letters, LETTERS],
    ] as const) {
      const cell = page.locator(`#inbox tr[data-wa-id="${u}"] td.last`);
      const shown = (await cell.textContent())!.trim();
      expect(shown.length).toBeLessThan(SHOWN);
      expect(shown.endsWith('…')).toBe(true);
      expect(full.startsWith(shown.slice(0, -1))).toBe(true);
      // The whole text is a click away: the session page.
      expect(await page.locator(`#inbox tr[data-wa-id="${u}"] a`).getAttribute('href')).toContain(u);
    }
    expect(ms).toBeLessThan(LOAD_MS);
  }, 180_000);

  for (const [name, full] of [
    ['accents', ACCENTS],
    ['letters', LETTERS],
  ] as const) {
    it(`a session page shows the start of the long message (${name}), the rest in a closed <details>`, async () => {
      const u = users[name];
      const ms = await timedLoad(`/admin/session?wa_id=${u}`);
      console.log(`QA64-F3 session page, 65,536 ${name}: ${ms} ms`);
      const msg = page.locator(`#conversation li.msg[data-id="wamid.QA64F3-${u}"]`);
      const parts = await msg.evaluate((li) => {
        const outside = li.cloneNode(true) as HTMLElement;
        for (const d of outside.querySelectorAll('details')) d.remove();
        const rest = li.querySelector('details.rest');
        return {
          outside: outside.textContent.length,
          open: rest?.hasAttribute('open') ?? null,
          summary: rest?.querySelector('summary')?.textContent ?? '',
          text: Array.from(li.querySelectorAll('.text'), (t) => t.textContent).join(''),
        };
      });
      expect(parts.outside).toBeLessThan(SHOWN);
      expect(parts.open).toBe(false);
      expect(parts.summary).toContain('65,536 characters');
      // Nothing lost: the shown start and the folded rest make the message.
      expect(parts.text).toBe(full);
      expect(ms).toBeLessThan(LOAD_MS);
      // The agent opens the rest and reads it. A run with no space has line breaks offered in it
      // (<wbr>): without them, 65,536 letters took 4.7 s to lay out once opened.
      if (name === 'letters')
        expect(await msg.locator('details.rest .text wbr').count()).toBeGreaterThan(1_000);
      const opened = await msg.evaluate((li) => {
        const rest = li.querySelector('details.rest')!;
        rest.scrollIntoView();
        const started = performance.now();
        rest.querySelector('summary')!.click();
        li.getBoundingClientRect();
        return performance.now() - started;
      });
      expect(await msg.locator('details.rest').getAttribute('open')).not.toBeNull();
      expect(await msg.locator('details.rest .text').isVisible()).toBe(true);
      console.log(`QA64-F3 the rest of the 65,536 ${name} opened: ${Math.round(opened)} ms`);
      expect(opened).toBeLessThan(LOAD_MS);
      expect(pageErrors).toEqual([]);
    }, 180_000);
  }
});
