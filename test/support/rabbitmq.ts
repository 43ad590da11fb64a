/**
 * Real RabbitMQ for the suites about the RabbitMQ intake: where it is (`AMQP_URL`), whether it
 * answers (checked once, on import), a unique queue per test and its removal afterwards. Under
 * CI=true a missing RabbitMQ fails the run; elsewhere its suites are skipped with a loud notice.
 */
import { randomBytes } from 'node:crypto';
import amqplib, { type Channel } from 'amqplib';
import { describe } from 'vitest';

export const AMQP_URL = process.env.AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672';

async function rabbitAnswers(url: string): Promise<string | null> {
  try {
    const c = await amqplib.connect(url, { timeout: 1500 });
    await c.close();
    return null;
  } catch (err) {
    return `RabbitMQ at ${url.replace(/\/\/[^@]*@/, '//')}: ${err instanceof Error ? err.message : String(err)}`;
  }
}

const problem = await rabbitAnswers(AMQP_URL);
if (problem !== null) {
  const line = `RabbitMQ intake suites need RabbitMQ: ${problem}`;
  if (process.env.CI === 'true') throw new Error(`${line} (CI=true: failing)`);
  console.warn(
    `\n${'!'.repeat(100)}\n!! SKIPPED: ${line}\n!! Set AMQP_URL or start RabbitMQ.\n${'!'.repeat(100)}\n`,
  );
}

/** `describe`, skipped (loudly, above) when RabbitMQ is not there. */
export const describeRabbit = problem === null ? describe : describe.skip;

/** A fresh intake queue name for one test. */
export function intakeQueue(): string {
  return `baton-test.${randomBytes(5).toString('hex')}`;
}

/** Runs `fn` on a channel of its own connection, then closes both. */
export async function withChannel<T>(fn: (ch: Channel) => Promise<T>): Promise<T> {
  const c = await amqplib.connect(AMQP_URL);
  try {
    const ch = await c.createChannel();
    return await fn(ch);
  } finally {
    await c.close().catch(() => undefined);
  }
}

/** Messages ready in `queue` (0 when it does not exist). */
export function readyCount(queue: string): Promise<number> {
  return withChannel(async (ch) => (await ch.checkQueue(queue)).messageCount).catch(() => 0);
}

/** Deletes a test's intake queue and its rejected queue. */
export async function dropQueues(queue: string): Promise<void> {
  await withChannel(async (ch) => {
    await ch.deleteQueue(queue);
    await ch.deleteQueue(`${queue}.rejected`);
  }).catch(() => undefined);
}
