/**
 * One clock for every process that shares the store: Redis's (`TIME`).
 *
 * Ingress and worker processes on different machines compare each other's times: a message's
 * storage time (stamped by the ingress that stored it) opens its session's buffer window, and a
 * worker closes that window against its own clock; the intake watermarks and the ready queue's
 * due times are compared the same way. With each process on its own wall clock, a skew of a
 * fraction of the window splits bursts: an ingress 0.6 s behind stores messages that a worker
 * takes for 0.6 s old, so it closes their batch before the rest of the burst is stored (and a
 * worker ahead does the same to every ingress). So each process reads Redis's clock when it
 * starts and every few seconds after, and runs its own monotonic clock at that offset: no
 * Redis call per reading, no step when the machine's wall clock is set, and the processes
 * disagree by no more than half a round trip to Redis plus drift between syncs.
 *
 * A Redis Cluster has one clock per node: the node with the lowest address is the reference,
 * for every process alike. Readings never go backwards: a sync that finds the clock ahead
 * holds it until the reference catches up.
 * @module
 */
import { performance } from 'node:perf_hooks';
import { masterNodes, nodeAddress, type RedisClient } from './redis-client.ts';

/** How often the offset to Redis's clock is measured again, ms. */
export const CLOCK_SYNC_MS = 5000;

/** Round trips measured per sync; the fastest one's reading is kept (the least uncertainty). */
const SAMPLES = 3;

export class StoreClock {
  /** Redis's epoch ms minus `performance.now()`; the local wall clock's until the first sync. */
  private offset = Date.now() - performance.now();
  private last = 0;
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly redis: RedisClient,
    private readonly onError: (err: unknown) => void = () => undefined,
  ) {}

  /** Epoch ms by the store's clock. */
  readonly now = (): number => {
    const t = Math.floor(performance.now() + this.offset);
    if (t > this.last) this.last = t;
    return this.last;
  };

  /** Measures the offset to Redis's clock now. Rejects when Redis does not answer. */
  async sync(): Promise<void> {
    const node = reference(this.redis);
    let best: { rtt: number; offset: number } | null = null;
    for (let i = 0; i < SAMPLES; i++) {
      const sent = performance.now();
      const [sec = 0, usec = 0] = await node.time();
      const back = performance.now();
      const redisMs = Number(sec) * 1000 + Number(usec) / 1000;
      const rtt = back - sent;
      if (best === null || rtt < best.rtt) best = { rtt, offset: redisMs - (sent + back) / 2 };
    }
    if (best) this.offset = best.offset;
  }

  /** Syncs every {@link CLOCK_SYNC_MS}; a failed sync keeps the last offset. */
  start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => {
      this.sync().catch(this.onError);
    }, CLOCK_SYNC_MS);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }
}

/** The node whose clock is the reference: the only one, or the cluster master of lowest address. */
function reference(redis: RedisClient): Pick<RedisClient, 'time'> {
  const nodes = [...masterNodes(redis)].sort((a, b) => nodeAddress(a).localeCompare(nodeAddress(b)));
  return nodes[0] ?? redis;
}
