/**
 * Piped input read from the start, with the time each chunk came, and played back once the chat
 * begins with the same gaps between chunks. Lines piped while the embedded Baton was starting
 * were read only once it was up, all at once, and posted as one burst: `printf` lines a second
 * apart reached one step as one joined text (outside test QA86-F4). Lines that came together
 * still come together (a burst, as documented).
 * @module
 */
import { PassThrough } from 'node:stream';

/** A stream that replays `input` from {@link PacedInput.start} on, keeping its timing. */
export interface PacedInput {
  readonly stream: PassThrough;
  /** Plays what came so far, and what comes next, at the offsets it came at. */
  start(): void;
  /** Stops reading `input` (the chat is over): nothing more is played. */
  stop(): void;
}

/**
 * Starts reading `input` now.
 *
 * @example
 * const paced = pacedInput(process.stdin);
 * await startBaton();
 * paced.start();
 * readline.createInterface({ input: paced.stream });
 */
export function pacedInput(input: NodeJS.ReadableStream): PacedInput {
  const stream = new PassThrough();
  const came: Array<{ readonly chunk: Buffer | string | null; readonly at: number }> = [];
  let first: number | undefined;
  let startedAt: number | undefined;
  // One chunk at a time, in the order they came, each at its offset from the first.
  let tail = Promise.resolve();
  const play = (chunk: Buffer | string | null, at: number): void => {
    const due = startedAt! + (at - (first ?? at));
    tail = tail.then(async () => {
      const wait = due - Date.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      if (chunk === null) stream.end();
      else stream.write(chunk);
    });
  };
  const arrive = (chunk: Buffer | string | null): void => {
    const at = Date.now();
    first ??= at;
    if (startedAt === undefined) came.push({ chunk, at });
    else play(chunk, at);
  };
  const onData = (chunk: Buffer | string): void => arrive(chunk);
  const onEnd = (): void => arrive(null);
  const onError = (err: Error): void => {
    stream.destroy(err);
  };
  input.on('data', onData);
  input.on('end', onEnd);
  input.on('error', onError);
  return {
    stream,
    start() {
      if (startedAt !== undefined) return;
      startedAt = Date.now();
      for (const c of came.splice(0)) play(c.chunk, c.at);
    },
    stop() {
      input.off('data', onData);
      input.off('end', onEnd);
      input.off('error', onError);
      input.pause();
    },
  };
}
