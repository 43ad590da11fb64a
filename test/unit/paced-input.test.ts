/**
 * Piped input read while the embedded Baton starts keeps its timing: lines a moment apart are
 * played a moment apart once the chat begins, not all at once as one burst (outside test
 * QA86-F4); lines that came together still come together.
 */
import { PassThrough } from 'node:stream';
import { expect, it } from 'vitest';
import { pacedInput } from '../../src/simulate/paced-input.ts';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

it('plays chunks read before the start at their offsets, and those after it as they come', async () => {
  const input = new PassThrough();
  const paced = pacedInput(input);
  const got: Array<{ text: string; at: number }> = [];
  paced.stream.on('data', (b: Buffer) => got.push({ text: b.toString(), at: Date.now() }));
  const ended = new Promise<void>((r) => paced.stream.on('end', () => r()));
  input.write('hi\nthere\n'); // together: a burst
  await sleep(400);
  input.write('Jane\n'); // 400 ms later, still before the start
  await sleep(300);
  expect(got).toEqual([]); // nothing before the chat begins
  const startedAt = Date.now();
  paced.start();
  await sleep(100);
  input.end('1\n'); // after the start: 800 ms after the first chunk
  await ended;
  expect(got.map((g) => g.text)).toEqual(['hi\nthere\n', 'Jane\n', '1\n']);
  expect(got[0]!.at - startedAt).toBeLessThan(100);
  // The gaps are kept: Jane about 400 ms after the first lines, 1 about 400 ms after Jane.
  expect(got[1]!.at - got[0]!.at).toBeGreaterThanOrEqual(380);
  expect(got[2]!.at - got[1]!.at).toBeGreaterThanOrEqual(350);
  paced.stop();
});
