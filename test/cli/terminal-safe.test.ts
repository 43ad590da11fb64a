/**
 * What `baton session show|reset` prints that came from a user or from the running process's
 * admin API holds nothing a terminal acts on (outside test QA64-F4): a user's text with a
 * right-to-left override and a window-title escape, and a hostile admin API (named in the data
 * directory's `baton.admin.json`) answering escape sequences that clear the screen and fake a
 * "Session reset OK". The CLI runs as an operator runs it, in a process of its own.
 */
import { writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { terminalSafeJson, terminalSafeText } from '../../src/terminal.ts';
import { runBaton } from '../support/procs.ts';
import { startHarness, type Harness } from '../support/harness.ts';
import { text, webhook } from '../support/payloads.ts';

/** What a terminal would act on: C0 but line breaks (stdout's JSON is indented), DEL, C1, bidi. */
// eslint-disable-next-line no-control-regex -- control characters are what it looks for
const RAW = /[\u0000-\u0009\u000B-\u001F\u007F-\u009F\u061C\u200E\u200F\u202A-\u202E\u2066-\u2069]/u;

const HOSTILE_TEXT = 'Ann \u202Etxt.exe \u001b]0;pwned\u0007';
const FAKE = '\u001b[2J\u001b[H\u001b]0;pwned\u0007\r\nSession reset OK\u009b2J\u202E';

let h: Harness;
let hostile: Server;
const U = '15550604001';

beforeAll(async () => {
  h = await startHarness();
  expect((await h.post(webhook([text(U, 'hi', 1_750_000_000)])))?.status).toBe(200);
  await h.settled(U, 1);
  expect((await h.post(webhook([text(U, HOSTILE_TEXT, 1_750_000_001)])))?.status).toBe(200);
  await h.settled(U, 2);
  hostile = createServer((req, res) => {
    res.writeHead(req.method === 'GET' ? 200 : 409, { 'content-type': 'application/json' });
    res.end(
      req.method === 'GET'
        ? JSON.stringify({ channel: FAKE, data: { name: FAKE }, transitions: [] })
        : JSON.stringify({ error: FAKE, code: 'BATON_ERR_AMBIGUOUS_SESSION', channels: [FAKE, '\u009b31m'] }),
    );
  });
  await new Promise<void>((r) => hostile.listen(0, '127.0.0.1', r));
}, 30_000);

afterAll(async () => {
  await new Promise((r) => hostile?.close(r));
  await h?.close();
});

describe('the CLI prints nothing a terminal acts on', () => {
  it("session show: a user's text with a bidi override and an escape sequence, escaped", async () => {
    // Baton runs on the data directory: the CLI asks its admin API.
    const r = await runBaton(['session', 'show', U], { BATON_DATA_DIR: h.dir });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).not.toMatch(RAW);
    expect(r.stdout).toContain('\\u202e');
    expect(r.stdout).toContain('\\u001b]0;pwned\\u0007');
    // The same text, read back.
    expect(JSON.stringify(JSON.parse(r.stdout))).toContain(JSON.stringify(HOSTILE_TEXT).slice(1, -1));
  }, 30_000);

  it("a hostile admin API's error and channels, and its session, escaped", async () => {
    const url = `http://127.0.0.1:${(hostile.address() as AddressInfo).port}`;
    // The running Baton's handle, pointed elsewhere (the process named is alive: this one).
    writeFileSync(
      join(h.dir, 'baton.admin.json'),
      JSON.stringify({ pid: process.pid, url, token: 'hostile' }),
    );
    const reset = await runBaton(['session', 'reset', U], { BATON_DATA_DIR: h.dir });
    expect(reset.code).toBe(2);
    expect(reset.stdout).toBe('');
    expect(reset.stderr).not.toMatch(RAW);
    expect(reset.stderr).toBe(
      'baton: \\u{1b}[2J\\u{1b}[H\\u{1b}]0;pwned\\u{7}\\u{d}\\u{a}Session reset OK\\u{9b}2J\\u{202e}: ' +
        '\\u{1b}[2J\\u{1b}[H\\u{1b}]0;pwned\\u{7}\\u{d}\\u{a}Session reset OK\\u{9b}2J\\u{202e}, \\u{9b}31m; pass --channel\n',
    );
    const show = await runBaton(['session', 'show', U], { BATON_DATA_DIR: h.dir });
    expect(show.code).toBe(0);
    expect(show.stdout).not.toMatch(RAW);
    expect(JSON.parse(show.stdout)).toMatchObject({ session: { data: { name: FAKE } } });
  }, 30_000);

  it('escapes keep the value: JSON parses back the same; emoji joiners and line breaks of its own stay', () => {
    const value = { t: `${FAKE}\u200E\u2066x\u2069\u00AD\uFEFF`, emoji: '👩\u200D💻', fa: 'می\u200Cخواهم' };
    const json = terminalSafeJson(JSON.stringify(value, null, 2));
    expect(json).not.toMatch(RAW);
    expect(JSON.parse(json)).toEqual(value);
    expect(json).toContain('👩\u200D💻');
    expect(terminalSafeText('one\n\ttwo\rthree\u001b[2J')).toBe('one\n\ttwo\\u{d}three\\u{1b}[2J');
  });
});
