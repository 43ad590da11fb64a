/**
 * `baton simulate` in a real pseudo-terminal (tmux): start the reference bot, chat through an
 * order by typing, pick buttons by number, see the confirmation; the transcript matches.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { BATON_DEV } from '../support/procs.ts';

const ROOT = resolve(import.meta.dirname, '../..');
const haveTmux = spawnSync('tmux', ['-V']).status === 0;
if (!haveTmux && !process.env.CI) console.warn('\n!!! simulate TTY test SKIPPED: tmux is not installed\n');

const socket = `baton-sim-${process.pid}`;
const tmux = (...args: string[]): string =>
  execFileSync('tmux', ['-L', socket, '-f', '/dev/null', ...args], { encoding: 'utf8' });
const screen = (name = 'sim'): string => tmux('capture-pane', '-p', '-J', '-S', '-200', '-t', name);

async function waitForScreen(text: string, ms = 15_000, name = 'sim'): Promise<string> {
  const deadline = Date.now() + ms;
  for (;;) {
    const s = screen(name);
    if (s.includes(text)) return s;
    if (Date.now() > deadline) throw new Error(`"${text}" never appeared; screen:\n${s}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const type = (line: string): void => {
  tmux('send-keys', '-t', 'sim', '-l', line);
  tmux('send-keys', '-t', 'sim', 'Enter');
};

/** `baton simulate --start` in a new tmux session `name`, `width` columns wide; `after` follows it. */
function startSimulator(name: string, width: number, extra: string[] = [], after = ''): void {
  const cmd = [process.execPath, BATON_DEV, 'simulate', '--start', '--graph-port', '0', ...extra]
    .map((a) => `'${a}'`)
    .join(' ');
  const shell = `env -i PATH="$PATH" HOME="$HOME" TERM=xterm-256color ${cmd}${after}`;
  tmux('new-session', '-d', '-s', name, '-x', String(width), '-y', '50', '-c', ROOT, shell);
}

const dir = mkdtempSync(join(tmpdir(), 'baton-sim-tty-'));
afterAll(() => {
  if (haveTmux) spawnSync('tmux', ['-L', socket, 'kill-server']);
  rmSync(dir, { recursive: true, force: true });
});

describe.skipIf(!haveTmux && !process.env.CI)('baton simulate in a terminal', () => {
  it('chats through an order: typed text, buttons picked by number, the confirmation, a matching transcript', async () => {
    const transcript = join(dir, 'chat.txt');
    startSimulator('sim', 110, ['--transcript', transcript], '; echo SIM-EXIT=$?; sleep 30');
    await waitForScreen('/help lists commands');
    type('hello');
    await waitForScreen('What is your name?');
    type('Jane Doe');
    await waitForScreen('[1] Trail Shoe   [2] Rain Jacket   [3] Day Pack');
    type('3');
    await waitForScreen('Where should we ship it?');
    type('1 Main St, Springfield');
    await waitForScreen('[1] Confirm   [2] Cancel');
    type('1');
    const final = await waitForScreen('Your order is confirmed.');
    expect(final).toContain('Please confirm: Day Pack for Jane Doe, shipped to 1 Main St, Springfield.');
    // What the user typed stays on screen above the bot's answers.
    expect(final.indexOf('user 1 > Jane Doe')).toBeLessThan(final.indexOf('Which product'));
    type('/quit');
    // /quit leaves the chat with exit code 0.
    await waitForScreen('SIM-EXIT=0');
    expect(readFileSync(transcript, 'utf8')).toBe(
      [
        'user 1 > hello',
        'bot > 1 | Hi! Let us get your order started. What is your name?',
        'user 1 > Jane Doe',
        'bot > 1 | Thanks, Jane Doe. Which product would you like?',
        '        | [1] Trail Shoe   [2] Rain Jacket   [3] Day Pack',
        'user 1 > (tapped) Day Pack',
        'bot > 1 | Where should we ship it? Please send the full address.',
        'user 1 > 1 Main St, Springfield',
        'bot > 1 | Please confirm: Day Pack for Jane Doe, shipped to 1 Main St, Springfield.',
        '        | [1] Confirm   [2] Cancel',
        'user 1 > (tapped) Confirm',
        'bot > 1 | Your order is confirmed. Thank you! Send any message to start a new order.',
        '',
      ].join('\n'),
    );
  }, 60_000);

  // Ctrl-D with a reply still due: the reply printed after it drew the prompt again, which
  // resumed the terminal's input after the embedded Baton had stopped: lines typed there went
  // nowhere, and only a second Ctrl-D ended the process (outside test QA131-F1).
  it('leaves after the replies due at Ctrl-D, without a second Ctrl-D', async () => {
    startSimulator('eof', 110, [], '; echo EOF-EXIT=$?; sleep 30');
    await waitForScreen('/help lists commands', 15_000, 'eof');
    tmux('send-keys', '-t', 'eof', '-l', 'hello');
    tmux('send-keys', '-t', 'eof', 'Enter');
    tmux('send-keys', '-t', 'eof', 'C-d');
    const end = await waitForScreen('EOF-EXIT=0', 20_000, 'eof');
    expect(end).toContain('What is your name?');
  }, 60_000);

  it('leaves at Ctrl-C at once, with exit code 130, the shell on a line of its own (QA131-F6)', async () => {
    startSimulator('intr', 110, [], '; echo INTR-EXIT=$?; sleep 30');
    await waitForScreen('/help lists commands', 15_000, 'intr');
    tmux('send-keys', '-t', 'intr', '-l', 'hello');
    tmux('send-keys', '-t', 'intr', 'Enter');
    await waitForScreen('What is your name?', 15_000, 'intr');
    tmux('send-keys', '-t', 'intr', 'C-c');
    const end = await waitForScreen('INTR-EXIT=', 20_000, 'intr');
    expect(end).toMatch(/^INTR-EXIT=130$/m);
  }, 60_000);

  // The terminal closed under it: readline's last setRawMode failed with EIO, unhandled, and the
  // process crashed with the embedded Baton's directory (its admin token, the conversations) left
  // in /tmp (outside test QA81-F1).
  it('removes its data directory when its terminal is closed (tmux kill-session)', async () => {
    startSimulator('gone', 200);
    const deadline = Date.now() + 15_000;
    let data: string | undefined;
    while (data === undefined) {
      const m = /data: (\S+) \(removed on exit/.exec(tmux('capture-pane', '-p', '-J', '-t', 'gone'));
      data = m?.[1];
      if (data === undefined && Date.now() > deadline) throw new Error('the simulator never started');
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(existsSync(data)).toBe(true);
    tmux('kill-session', '-t', 'gone');
    const until = Date.now() + 10_000;
    while (existsSync(data) && Date.now() < until) await new Promise((r) => setTimeout(r, 100));
    expect(existsSync(data)).toBe(false);
  }, 60_000);
});
