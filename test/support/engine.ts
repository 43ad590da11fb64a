/**
 * One Engine for tests: the defaults every suite used to spell out (buffer 0, 5 s leases, 24 h
 * sessions, 3 retries, a silent logger, fresh metrics, no loop-delay stretch), the flows given first the default, and a
 * sender that accepts everything unless one is given.
 */
import pino from 'pino';
import { EmbeddedBackend } from '../../src/backends/embedded/index.ts';
import type { Backend } from '../../src/backends/types.ts';
import { orderFlow } from '../../src/bots/order.ts';
import { Engine, type EngineOptions, type OutboundSender } from '../../src/engine/engine.ts';
import type { Flow } from '../../src/flow/define.ts';
import { Metrics } from '../../src/metrics.ts';
import type { SessionKey } from '../../src/model/message.ts';

export interface TestEngineOptions extends Partial<Omit<EngineOptions, 'backend' | 'flows' | 'senders'>> {
  /** The flows served; the first is the default (default: the reference bot). */
  readonly flows?: readonly Flow[];
  /** The Cloud API sender (default: accepts every send). */
  readonly send?: OutboundSender['send'];
}

export function testEngine(backend: Backend, o: TestEngineOptions = {}): Engine {
  const { flows = [orderFlow], send = async (m) => ({ providerMessageId: `wamid.${m.id}` }), ...rest } = o;
  return new Engine({
    backend,
    flows: new Map(flows.map((f) => [f.id, f])),
    defaultFlow: flows[0]!.id,
    senders: { 'cloud-api': { send } },
    bufferMs: 0,
    lockTtlMs: 5000,
    sessionTtlSec: 86_400,
    maxRetries: 3,
    logger: pino({ level: 'silent' }),
    metrics: new Metrics(),
    // No stretch of buffer windows by this process's measured loop delay (loop-lag.ts): tests on
    // a fake clock choose every instant; a test of the stretch passes its own.
    loopLagMs: () => 0,
    ...rest,
  });
}

/**
 * An in-memory embedded store (no buffer window) holding one user's "hi" (`w1`, timestamp 1),
 * for suites about what the engine does with a single turn. `close` goes on the caller's list.
 */
export async function storeWithHi(): Promise<{ backend: EmbeddedBackend; key: SessionKey }> {
  const backend = new EmbeddedBackend({ file: ':memory:', bufferMs: 0, dedupeTtlSec: 3600 });
  await backend.init();
  const key = { channel: 'c', user: '15550001111' };
  await backend.ingest({
    messages: [
      { id: 'w1', provider: 'cloud-api', ...key, timestamp: 1, content: { type: 'text', body: 'hi' } },
    ],
    statuses: [],
  });
  return { backend, key };
}
