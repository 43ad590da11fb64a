/**
 * `messages_per_s` in distributed mode counts what every process stored, not only the process
 * asked: an admin request reaches one ingress, while another ingress, or a RabbitMQ consumer in
 * a worker, stored the messages.
 */
import { describe, expect, it } from 'vitest';
import { makeBackend, useCleanup } from './harness.ts';
import { servicesUp } from '../support/services.ts';

useCleanup();

describe.skipIf(!servicesUp)('messages stored per second, across processes', () => {
  it("adds up every process's counts", async () => {
    const { backend: one, prefix, schema } = await makeBackend();
    const { backend: other } = await makeBackend({}, { prefix, schema });
    one.countStored(60);
    other.countStored(30);
    other.countStored(30);
    // Each process sees its own counts at once, and the others' once they are in Redis.
    expect((await one.stats()).messagesPerSecond).toBe(1);
    await other.close(); // a stopping process adds what it counted
    expect((await one.stats()).messagesPerSecond).toBe(2);
  });

  it('forgets counts older than a minute', async () => {
    let t = Date.now();
    const { backend } = await makeBackend({ now: () => t });
    backend.countStored(120);
    expect((await backend.stats()).messagesPerSecond).toBe(2);
    t += 61_000;
    expect((await backend.stats()).messagesPerSecond).toBe(0);
  });
});
